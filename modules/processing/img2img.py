"""img2img and inpaint: resize modes, masks, the init latent, image conditioning, the sampling pass.

Denoising strength d starts sampling part-way down the schedule: of a `steps` schedule the last
int(d * steps) steps run (A1111; `img2img_fix_steps` runs exactly `steps` of a steps / d schedule).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from modules.processing import inpaint, vae
from modules.processing.sample import SamplingPass, make_rng, model_device, run_pass

RESIZE_JUST, RESIZE_CROP, RESIZE_FILL, RESIZE_LATENT = 0, 1, 2, 3
HYBRID_CHANNELS = {5: "inpainting", 1: "depth", 3: "x4 upscaler"}


def resize_image(mode: int, im: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize modes: 0 just resize (stretch), 1 crop and resize (cover, crop the centre),
    2 resize and fill (fit, then stretch the edge rows/columns into the bars); 3 (latent upscale)
    leaves the image alone here."""
    if mode == RESIZE_JUST:
        return im.resize((width, height), Image.LANCZOS)
    if mode == RESIZE_LATENT:
        return im
    ratio, src_ratio = width / height, im.width / im.height
    cover = mode == RESIZE_CROP
    if (ratio > src_ratio) == cover:  # scale by width
        src_w, src_h = width, max(1, im.height * width // im.width)
    else:
        src_w, src_h = max(1, im.width * height // im.height), height
    resized = im.resize((src_w, src_h), Image.LANCZOS)
    out = Image.new("RGB", (width, height))
    out.paste(resized, (width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode != RESIZE_FILL:
        return out
    if src_h < height:
        top = height // 2 - src_h // 2
        if top > 0:
            out.paste(resized.resize((width, top), box=(0, 0, width, 0)), (0, 0))
        bottom = height - (top + src_h)
        if bottom > 0:
            out.paste(resized.resize((width, bottom), box=(0, src_h, width, src_h)), (0, top + src_h))
    elif src_w < width:
        left = width // 2 - src_w // 2
        if left > 0:
            out.paste(resized.resize((left, height), box=(0, 0, 0, height)), (0, 0))
        right = width - (left + src_w)
        if right > 0:
            out.paste(resized.resize((right, height), box=(src_w, 0, src_w, height)), (left + src_w, 0))
    return out


def extra_channels(model) -> int:
    """UNet input channels beyond the latent: 0 ordinary, 5 inpainting, 1 depth, 3 x4."""
    return model.model.diffusion_model.config.in_channels - model.latent_channels


def hybrid_model_error(model, task: str) -> ValueError | None:
    kind = HYBRID_CHANNELS.get(extra_channels(model))
    if kind == "depth":
        return ValueError(f"the loaded checkpoint is a depth model (5-channel UNet): it needs a depth map, so "
                          f"{task} cannot use it. Use the depth2img tab, or load an ordinary checkpoint")
    if kind == "x4 upscaler":
        return ValueError(f"the loaded checkpoint is the SD x4 upscaler (7-channel UNet): {task} cannot use it. "
                          "Use it from the Extras tab (SD x4 upscaler), or load an ordinary checkpoint")
    if extra_channels(model) not in (0, 5):
        return ValueError(f"the loaded checkpoint's UNet takes {model.model.diffusion_model.config.in_channels} "
                          f"input channels, which {task} does not know how to condition")
    return None


def image_conditioning(p, source: torch.Tensor, image_mask: Image.Image | None = None) -> torch.Tensor | None:
    """c_concat for the model (None for ordinary models). source: [B, 3, H, W] in [-1, 1]."""
    custom = getattr(p, "image_conditioner", None)
    if custom is not None:
        return custom(p, source, image_mask)
    model = p.sd_model
    error = hybrid_model_error(model, "txt2img" if not p.is_img2img else "img2img")
    if error is not None:
        raise error
    if extra_channels(model) == 0:
        return None
    tiled = bool(p.opts.sd_vae_tiled)
    return inpaint.inpainting_image_conditioning(
        model, source, image_mask, float(p.opts.inpainting_mask_weight), lambda x: vae.encode(model, x, tiled))


def _prepare_mask(p, first_image: Image.Image):
    """Sets p.mask_for_overlay / p.paste_to; returns (image_mask at processing size, crop region)."""
    mask = inpaint.mask_from_inputs(p.image_mask, first_image)
    if mask is None:
        return None, None
    if p.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
    if p.mask_blur_x > 0 or p.mask_blur_y > 0:
        mask = inpaint.blur_mask(mask, p.mask_blur_x, p.mask_blur_y)
        blur = p.mask_blur_x if p.mask_blur_x == p.mask_blur_y else f"{p.mask_blur_x}x{p.mask_blur_y}"
        p.extra_generation_params["Mask blur"] = blur
    mode = RESIZE_JUST if p.resize_mode == RESIZE_LATENT else p.resize_mode
    if p.inpaint_full_res:
        p.mask_for_overlay = mask
        region = inpaint.get_crop_region(mask, p.inpaint_full_res_padding)
        p.extra_generation_params["Inpaint area"] = "Only masked"
        p.extra_generation_params["Masked area padding"] = p.inpaint_full_res_padding
        if region is not None:
            region = inpaint.expand_crop_region(region, p.width, p.height, mask.width, mask.height)
            x1, y1, x2, y2 = region
            p.paste_to = (x1, y1, x2 - x1, y2 - y1)
            return resize_image(RESIZE_JUST, mask.crop(region), p.width, p.height), region
        mask = resize_image(mode, mask, p.width, p.height)
        p.mask_for_overlay = mask
        return mask, None
    mask = resize_image(mode, mask, p.width, p.height)
    doubled = np.clip(np.asarray(mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
    p.mask_for_overlay = Image.fromarray(doubled)
    return mask, None


def init_img2img(p) -> None:
    """Prepare the init latent, masks, overlays and image conditioning (once per job)."""
    if not p.init_images:
        raise ValueError("img2img needs an init image: give at least one in init_images")
    if len(p.init_images) not in (1, p.batch_size):
        raise ValueError(f"got {len(p.init_images)} init images for a batch size of {p.batch_size}: "
                         "give one image (used for every image of the batch) or one per image")
    model = p.sd_model
    f = model.vae_scale_factor
    image_mask, region = _prepare_mask(p, p.init_images[0])
    mode = p.resize_mode if image_mask is None else (RESIZE_JUST if p.resize_mode == RESIZE_LATENT else p.resize_mode)
    p.overlay_images = [] if image_mask is not None else None
    prepared = []
    for img in p.init_images:
        image = img.convert("RGB")
        if region is None:
            image = resize_image(mode, image, p.width, p.height)
        if image_mask is not None:
            p.overlay_images.append(inpaint.make_overlay(image, p.mask_for_overlay))
        if region is not None:
            image = resize_image(RESIZE_JUST, image.crop(region), p.width, p.height)
        if image_mask is not None and p.inpainting_fill != inpaint.INPAINT_ORIGINAL:
            image = inpaint.fill(image, image_mask)
        if mode == RESIZE_LATENT:  # encoded at its own size, rounded to whole latent cells
            image = image.resize((max(f, image.width // f * f), max(f, image.height // f * f)), Image.LANCZOS)
        prepared.append(image)
    if len(prepared) == 1:
        prepared = prepared * p.batch_size
        if p.overlay_images:
            p.overlay_images = p.overlay_images * p.batch_size
    p.source_images = prepared
    device = model_device(model)
    source = vae.pil_to_tensor(prepared).to(device)
    init_latent = vae.encode(model, source, bool(p.opts.sd_vae_tiled))
    if mode == RESIZE_LATENT:
        init_latent = F.interpolate(init_latent, size=(p.height // f, p.width // f), mode="bilinear")
        source = F.interpolate(source, size=(p.height, p.width), mode="bilinear")
    p.nmask = None
    if image_mask is not None:
        latent_mask = p.latent_mask if p.latent_mask is not None else image_mask
        mask, p.nmask = inpaint.latent_masks(latent_mask, init_latent.shape, device)
        if p.inpainting_fill == inpaint.INPAINT_LATENT_NOISE:
            noise = make_rng(p, init_latent.shape[1:], p.all_seeds[:p.batch_size], p.all_subseeds[:p.batch_size]).first()
            init_latent = init_latent * mask + noise * p.nmask
        elif p.inpainting_fill == inpaint.INPAINT_LATENT_NOTHING:
            init_latent = init_latent * mask
    p.init_latent = init_latent
    p.image_conditioning = image_conditioning(p, source, image_mask)


def sample_img2img(p, cond, uncond, seeds, subseeds, previewer=None) -> torch.Tensor:
    noise_multiplier = p.initial_noise_multiplier
    if noise_multiplier is None:
        noise_multiplier = float(p.opts.initial_noise_multiplier)
    if noise_multiplier != 1.0:
        p.extra_generation_params["Noise multiplier"] = noise_multiplier
    rng = make_rng(p, p.init_latent.shape[1:], seeds, subseeds)
    spass = SamplingPass(p.sampler, p.scheduler_info, p.steps, cond, uncond, p.cfg_scale,
                         image_cond=p.image_conditioning, init_latent=p.init_latent,
                         denoising_strength=float(p.denoising_strength), nmask=p.nmask,
                         noise_multiplier=noise_multiplier)
    return run_pass(p, spass, rng, previewer)
