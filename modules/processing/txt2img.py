"""txt2img: the first pass from noise, and the optional hires fix (upscale + img2img second pass)."""
from __future__ import annotations

import torch

from modules.models import family as model_family
from modules.processing import hires, vae
from modules.processing.img2img import extra_channels, hybrid_model_error, image_conditioning
from modules.processing.sample import SamplingPass, make_rng, model_device, run_pass
from modules.sampling import samplers

DEFAULT_HR_DENOISING = 0.7


def init_txt2img(p) -> None:
    """Check the model suits txt2img; work out the hires target size and its infotext fields."""
    error = hybrid_model_error(p.sd_model, "txt2img")
    if error is not None:
        raise error
    if not p.enable_hr:
        return
    f = p.sd_model.vae_scale_factor
    p.hr_upscaler = hires.check_upscaler(p.hr_upscaler, p.env.upscalers)
    if p.denoising_strength is None:
        p.denoising_strength = DEFAULT_HR_DENOISING
    up_x, up_y, final_x, final_y = hires.target_size(p.width, p.height, p.hr_scale, p.hr_resize_x,
                                                     p.hr_resize_y, f)
    p.hr_upscale_to_x, p.hr_upscale_to_y = up_x, up_y
    p.hr_final_size = (final_x, final_y)
    p.check_size(final_x, final_y, "hires fix target")
    params = p.extra_generation_params
    if p.hr_resize_x or p.hr_resize_y:
        params["Hires resize"] = f"{final_x}x{final_y}"
    else:
        params["Hires upscale"] = p.hr_scale
    if p.hr_second_pass_steps:
        params["Hires steps"] = p.hr_second_pass_steps
    params["Hires upscaler"] = p.hr_upscaler
    if p.hr_sampler_name and p.hr_sampler_name != p.sampler_name:
        params["Hires sampler"] = p.hr_sampler_name
    if p.hr_scheduler and p.hr_scheduler != p.scheduler:
        params["Hires schedule type"] = p.hr_scheduler
    if p.hr_prompt and p.hr_prompt != p.prompt:
        params["Hires prompt"] = p.hr_prompt
    if p.hr_negative_prompt and p.hr_negative_prompt != p.negative_prompt:
        params["Hires negative prompt"] = p.hr_negative_prompt


def hr_steps(p) -> int:
    return p.hr_second_pass_steps or p.steps


def txt2img_image_conditioning(p, batch: int) -> torch.Tensor | None:
    """Inpainting models in txt2img: repaint everything (mask of ones, grey masked image)."""
    if extra_channels(p.sd_model) == 0:
        return None
    grey = torch.zeros(batch, 3, p.height, p.width, device=model_device(p.sd_model))
    return image_conditioning(p, grey, None)


def sample_txt2img(p, cond, uncond, seeds, subseeds, previewer=None, hr_conds=None) -> torch.Tensor:
    """First pass, then (enable_hr, not interrupted or skipped) the hires pass. hr_conds: a callable
    returning (cond, uncond) for the second pass."""
    model = p.sd_model
    f = model.vae_scale_factor
    shape = (model.latent_channels, p.height // f, p.width // f)
    rng = make_rng(p, shape, seeds, subseeds)
    spass = SamplingPass(p.sampler, p.scheduler_info, p.steps, cond, uncond, p.cfg_scale,
                         image_cond=txt2img_image_conditioning(p, len(seeds)))
    samples = run_pass(p, spass, rng, previewer)
    job = p.job
    if not p.enable_hr or (job is not None and (job.interrupted or job.skipped)):
        return samples
    return sample_hires(p, samples, seeds, subseeds, previewer, hr_conds)


def _upscale(p, samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(upscaled latent, upscaled image [-1, 1] when the model needs it for its conditioning)."""
    model = p.sd_model
    f = model.vae_scale_factor
    tiled = bool(p.opts.sd_vae_tiled)
    final_x, final_y = p.hr_final_size
    if p.hr_upscaler in hires.LATENT_UPSCALE_MODES:
        latent = hires.upscale_latent(samples, p.hr_upscaler, p.hr_upscale_to_x, p.hr_upscale_to_y,
                                      final_x, final_y, f)
        source = vae.decode(model, latent, tiled) if extra_channels(model) else None
        return latent, source
    images = vae.tensor_to_pil(vae.decode(model, samples, tiled))
    upscaled = [hires.upscale_image(p.env.upscalers, im, p.hr_upscaler, p.hr_upscale_to_x, p.hr_upscale_to_y,
                                    final_x, final_y) for im in images]
    source = vae.pil_to_tensor(upscaled).to(model_device(model))
    return vae.encode(model, source, tiled), source


def sample_hires(p, samples, seeds, subseeds, previewer=None, hr_conds=None) -> torch.Tensor:
    p.is_hr_pass = True
    try:
        latent, source = _upscale(p, samples)
        image_cond = image_conditioning(p, source, None) if source is not None else None
        sampler, scheduler = p.sampler, p.scheduler_info
        if p.hr_sampler_name or p.hr_scheduler:
            sampler, scheduler = samplers.resolve_sampler_and_scheduler(
                p.hr_sampler_name or p.sampler_name, p.hr_scheduler or p.scheduler,
                family=model_family.of_model(p.sd_model))
        cond, uncond = hr_conds(sampler) if hr_conds is not None else (None, None)
        rng = make_rng(p, latent.shape[1:], seeds, subseeds)
        spass = SamplingPass(sampler, scheduler, hr_steps(p), cond, uncond, p.cfg_scale, image_cond=image_cond,
                             init_latent=latent, denoising_strength=float(p.denoising_strength),
                             step_offset=p.steps)
        return run_pass(p, spass, rng, previewer)
    finally:
        p.is_hr_pass = False
