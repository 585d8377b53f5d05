"""Sampling for the image-conditioned ("hybrid") models outside the txt2img/img2img loop: depth2img
(c_concat = depth) and the x4 upscaler (c_concat = noised low-res image, c_adm = its noise level).

One call: prompts -> conditioning (the model's text encoder through conditioning.PromptEncoder, or an injected
encoder) -> CFG denoiser with the same c_concat for cond and uncond -> a k-diffusion sampler, from
noise or (img2img) from an init latent part-way down the schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from modules.conditioning import PromptEncoder
from modules.processing.sample import CFG_PP_SCALE
from modules.sampling import samplers
from modules.sampling.cfg_denoiser import CFGDenoiser
from modules.sampling.rng import ImageRNG


@dataclass
class SamplingSettings:
    """What the user picks for a hybrid-model run (A1111's names for sampler and scheduler)."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = "DPM++ 2M"
    scheduler: Optional[str] = None  # None: the sampler's default schedule type
    seed: int = -1  # -1: random
    eta: Optional[float] = None
    opts: Any = None  # the app's settings the schedules read (rho, Beta parameters); None: their defaults


class NoiseLevelConditioned:
    """The x4 model with its noise level bound: adds c_adm (the level, one per row) to every
    UNet call, so the CFG denoiser, which knows only c_crossattn / c_concat, can drive it."""

    def __init__(self, model, noise_level: torch.Tensor):
        self.model = model
        self.noise_level = noise_level  # [1] or [B]
        self.alphas_cumprod = model.alphas_cumprod
        self.parameterization = model.parameterization

    def apply_model(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
        level = self.noise_level.to(x_noisy.device).expand(x_noisy.shape[0])
        return self.model.apply_model(x_noisy, t, {**cond, "c_adm": level})


def sample_hybrid(model, settings: SamplingSettings, image_cond: torch.Tensor, latent_shape: tuple, *,
                  seed: int, init_latent: Optional[torch.Tensor] = None, denoising_strength: float = 1.0,
                  encoder: Any = None, interrupt: Any = None, inner: Any = None,
                  noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Latent [B, C, h, w] sampled with c_concat = image_cond [B, k, h, w] for cond and uncond.

    latent_shape: (C, h, w) of one image. seed: image i gets seed + i. init_latent: img2img start,
    with denoising_strength (A1111: the last int(strength * steps) steps of a `steps` schedule run).
    encoder: object with .multicond / .scheduled (modules.conditioning's), default modules.conditioning.PromptEncoder.
    inner: the model as the sampler sees it (NoiseLevelConditioned for x4), default `model`.
    noise: the starting unit noise [B, C, h, w] (tiles of one image share slices of it); default
    drawn from the seeds as A1111 does.
    """
    if settings.steps < 1:
        raise ValueError(f"steps must be at least 1, got {settings.steps}")
    batch = image_cond.shape[0]
    info, scheduler = samplers.resolve_sampler_and_scheduler(settings.sampler_name, settings.scheduler)
    denoiser = samplers.make_denoiser(inner if inner is not None else model)
    scheduler = samplers.concrete_scheduler(info, scheduler, settings.opts)
    schedule, _ = samplers.schedule_settings(info, scheduler, settings.opts)
    sigmas, t_enc = samplers.pass_sigmas(info, settings.steps, denoiser, scheduler,
                                         denoising_strength if init_latent is not None else None, **schedule)
    device = image_cond.device
    sigmas = sigmas.to(device)
    encoder = encoder or PromptEncoder(model)
    steps_for_cond = 2 * t_enc if info.second_order else t_enc
    cond = encoder.multicond([settings.prompt] * batch, max(steps_for_cond, 1))
    uncond = encoder.scheduled([settings.negative_prompt] * batch, max(steps_for_cond, 1))
    seeds = [seed + i for i in range(batch)]
    rng = ImageRNG(latent_shape, seeds, device=device, factor=model.vae_scale_factor)
    noise = rng.first() if noise is None else noise.to(device)
    cfg = CFGDenoiser(denoiser, total_steps=t_enc, interrupt=interrupt, keep_uncond=info.cfg_pp,
                      cond_scale_multiplier=CFG_PP_SCALE if info.cfg_pp else 1.0)
    extra_args = {"cond": cond, "uncond": uncond, "cond_scale": settings.cfg_scale, "image_cond": image_cond}
    kwargs = dict(extra_args=extra_args, callback=cfg.callback,
                  noise_sampler=samplers.make_noise_sampler(info, noise, sigmas, rng, seeds=seeds),
                  options=samplers.SamplerOptions(eta=settings.eta, extra=samplers.options_from_settings(
                      info, settings.opts)))
    with torch.no_grad():
        if init_latent is not None:
            return samplers.sample_img2img(cfg, init_latent, noise, sigmas, info, **kwargs)
        return samplers.sample(cfg, noise, sigmas, info, **kwargs)
