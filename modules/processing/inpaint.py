"""Inpainting: masks, "only masked" crops, masked-content fills, the paste-back overlay, and the
masked-image conditioning of 9-channel inpainting models.

Mask convention (A1111's): white (255) = repaint, black (0) = keep. The final picture is the
generated image with the original laid over it through alpha = 255 - blurred mask, so pixels where
the blurred mask is 0 are the original's exactly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from scipy import ndimage

INPAINT_FILL, INPAINT_ORIGINAL, INPAINT_LATENT_NOISE, INPAINT_LATENT_NOTHING = 0, 1, 2, 3


def mask_from_inputs(image_mask: Image.Image | None, init_image: Image.Image | None) -> Image.Image | None:
    """The mask as an L image at the init image's size: a separate mask image (its alpha when it has
    transparency, as masks drawn in a browser editor do; a mask of another size is resized, as A1111
    resizes it with the image), else the init image's transparent pixels; None = no inpainting."""
    if image_mask is not None:
        if image_mask.mode in ("RGBA", "LA") and image_mask.getextrema()[-1] != (255, 255):
            mask = image_mask.getchannel("A").point(lambda v: 255 if v > 128 else 0)
        else:
            mask = image_mask.convert("L")
        if init_image is not None and mask.size != init_image.size:
            mask = mask.resize(init_image.size, Image.LANCZOS)
        return mask
    if init_image is not None and init_image.mode in ("RGBA", "LA"):
        alpha = init_image.getchannel("A")
        if alpha.getextrema() != (255, 255):
            return ImageOps.invert(alpha).point(lambda v: 255 if v > 128 else 0)
    return None


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """Gaussian blur with separate sigmas along x and y (A1111's mask_blur_x / mask_blur_y)."""
    if blur_x <= 0 and blur_y <= 0:
        return mask
    arr = np.asarray(mask, dtype=np.float32)
    sigma = (max(blur_y, 0), max(blur_x, 0))
    # truncate like a kernel of 2 * int(2.5 * sigma + 0.5) + 1 taps (A1111's cv2 kernel size)
    out = ndimage.gaussian_filter(arr, sigma=sigma, mode="nearest", truncate=2.5)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def get_crop_region(mask: Image.Image, pad: int = 0) -> tuple[int, int, int, int] | None:
    """Bounding box (x1, y1, x2, y2) of the mask's non-zero pixels, grown by pad and clipped to the
    image; None when the mask is empty."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.width), min(y2 + pad, mask.height)


def expand_crop_region(region, target_w: int, target_h: int, image_w: int, image_h: int):
    """Grow the region to the target's aspect ratio (so the crop is not distorted when it is scaled
    to target_w x target_h), staying inside the image."""
    x1, y1, x2, y2 = region
    ratio = target_w / target_h
    w, h = x2 - x1, y2 - y1
    if w / h < ratio:  # too narrow: widen
        want = min(round(h * ratio), image_w)
        x1 -= (want - w) // 2
        x1 = min(max(x1, 0), image_w - want)
        x2 = x1 + want
    else:  # too flat: heighten
        want = min(round(w / ratio), image_h)
        y1 -= (want - h) // 2
        y1 = min(max(y1, 0), image_h - want)
        y2 = y1 + want
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked content "fill": replace the masked area by the colours around it (normalised Gaussian
    convolution of the kept pixels, coarse to fine), so the sampler starts from plausible colours."""
    img = np.asarray(image.convert("RGB"), dtype=np.float32)
    masked = np.asarray(mask.convert("L"), dtype=np.float32) > 0
    if not masked.any():
        return image.convert("RGB")
    known = (~masked).astype(np.float32)
    out = img.copy()
    if known.sum() == 0:
        out[:] = 127.0
    for sigma in (128, 32, 8, 2):
        den = ndimage.gaussian_filter(known, sigma, mode="nearest")
        ok = masked & (den > 1e-3)
        for c in range(3):
            num = ndimage.gaussian_filter(img[..., c] * known, sigma, mode="nearest")
            out[..., c][ok] = num[ok] / den[ok]
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def make_overlay(image: Image.Image, mask_for_overlay: Image.Image) -> Image.Image:
    """The original as RGBA with alpha = 255 - mask: laid over the result at the end."""
    overlay = image.convert("RGBA")
    overlay.putalpha(ImageOps.invert(mask_for_overlay.convert("L")))
    return overlay


def apply_overlay(image: Image.Image, paste_loc, overlay: Image.Image | None) -> Image.Image:
    """Paste a result (of an only-masked crop: scaled back into paste_loc (x, y, w, h)) into the
    full-size frame and lay the original over it."""
    if overlay is None:
        return image
    if paste_loc is not None:
        x, y, w, h = paste_loc
        base = Image.new("RGBA", overlay.size)
        base.paste(image.resize((w, h), Image.LANCZOS), (x, y))
        image = base
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB")


def latent_masks(latent_mask: Image.Image, latent_shape, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, nmask) at latent size: nmask 1 where new content is made (rounded, as A1111), mask = 1 - nmask."""
    _, c, h, w = latent_shape
    small = latent_mask.convert("L").resize((w, h), Image.LANCZOS)
    nmask = torch.from_numpy(np.around(np.asarray(small, dtype=np.float32) / 255.0))
    nmask = nmask[None, None].expand(1, c, h, w).to(device)
    return 1.0 - nmask, nmask


def inpainting_image_conditioning(model, source: torch.Tensor, image_mask: Image.Image | None,
                                  mask_weight: float, encode) -> torch.Tensor:
    """c_concat for a 9-channel inpainting model, in the original ldm order:
    [mask [B, 1, h, w], masked-image latent [B, 4, h, w]] (LatentInpaintDiffusion's concat_keys).

    source: the images [B, 3, H, W] in [-1, 1]; mask 1 = repaint (rounded); the masked image has the
    repainted area set to 0 (grey); mask_weight < 1 lets some of the original through (A1111's
    "inpainting conditioning mask strength")."""
    b, _, height, width = source.shape
    if image_mask is None:
        mask = torch.ones(1, 1, height, width)
    else:
        arr = np.asarray(image_mask.convert("L").resize((width, height)), dtype=np.float32) / 255.0
        mask = torch.from_numpy(np.around(arr))[None, None]
    return masked_image_conditioning(model, source, mask.to(source), mask_weight, encode)


def masked_image_conditioning(model, source: torch.Tensor, mask: torch.Tensor, mask_weight: float,
                              encode) -> torch.Tensor:
    """The c_concat above from a mask tensor [B or 1, 1, H, W] (1 = repaint); also what the
    inpainting fine-tune (modules.training.train_inpaint) trains on."""
    b, _, height, width = source.shape
    masked = torch.lerp(source, source * (1.0 - mask), mask_weight)
    latent = encode(masked)
    f = model.vae_scale_factor
    small_mask = F.interpolate(mask, size=(height // f, width // f)).expand(b, -1, -1, -1)
    return torch.cat([small_mask.to(latent), latent], dim=1)

