"""One sampling pass (txt2img, img2img, or a hires second pass): schedule, noise, CFG denoiser,
sampler, progress and live preview. Shared by the pipelines; knows nothing of prompts or images.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from modules.models import tome
from modules.sampling import samplers
from modules.sampling.cfg_denoiser import CFGDenoiser, LatentBlend, schedule_steps
from modules.sampling.rng import ImageRNG
from modules.sampling.schedules import Scheduler

CFG_PP_SCALE = 1 / 12.5  # A1111: CFG++ maps the usual CFG scale range [0, 12.5] to its [0, 1]


@dataclass
class SamplingPass:
    sampler: samplers.SamplerInfo
    scheduler: Scheduler
    steps: int                                  # as requested (img2img runs a part of them)
    cond: Any                                   # cond_schedule.MultiCond
    uncond: Any                                 # list[cond_schedule.ScheduledCond]
    cfg_scale: float
    image_cond: torch.Tensor | None = None      # c_concat of hybrid models
    init_latent: torch.Tensor | None = None     # img2img: start part-way down the schedule from it
    denoising_strength: float = 1.0
    nmask: torch.Tensor | None = None           # inpainting: 1 = new content (blend every step)
    noise_multiplier: float = 1.0
    step_offset: int = 0                        # progress: steps done by earlier passes of this image


def cond_schedule_steps(sampler: samplers.SamplerInfo, steps: int) -> int:
    """Steps the prompt schedules must be built for (the denoiser counts UNet calls)."""
    return schedule_steps(steps, sampler.second_order)


def steps_to_run(p, steps: int, denoising_strength: float | None, img2img: bool) -> int:
    if not img2img:
        return steps
    return samplers.img2img_steps(steps, denoising_strength or 0.0, bool(p.opts.img2img_fix_steps))[1]


def sampler_options(p, info: samplers.SamplerInfo | None = None) -> samplers.SamplerOptions:
    """The request's eta / sigma parameters, else the options' (A1111: p.s_churn or opts.s_churn);
    info: the pass's sampler (default p.sampler)."""
    opts = p.opts
    info = info or p.sampler

    def pick(value, key):
        return getattr(opts, key) if value is None else value

    s_tmax = pick(p.s_tmax, "s_tmax")
    eta = p.eta
    if eta is None:
        eta = getattr(opts, info.eta_option)
    return samplers.SamplerOptions(eta=float(eta), s_churn=float(pick(p.s_churn, "s_churn")),
                                   s_tmin=float(pick(p.s_tmin, "s_tmin")),
                                   s_tmax=float(s_tmax) if s_tmax else math.inf,
                                   s_noise=float(pick(p.s_noise, "s_noise")),
                                   extra=samplers.options_from_settings(info, opts))


def token_merging_ratio(p, for_hr: bool = False) -> float:
    """A1111's choice: the request's ratio, else the settings' (img2img and the hires pass have
    their own settings, 0 meaning "the general one")."""
    opts = p.opts
    if for_hr:
        return float(p.token_merging_ratio_hr or opts.token_merging_ratio_hr or p.token_merging_ratio
                     or opts.token_merging_ratio)
    if p.is_img2img:
        overridden = "token_merging_ratio" in (p.override_settings or {}) and opts.token_merging_ratio
        return float(p.token_merging_ratio or overridden or opts.token_merging_ratio_img2img
                     or opts.token_merging_ratio)
    return float(p.token_merging_ratio or opts.token_merging_ratio)


def negative_guidance_min_sigma(p) -> float:
    """NGMS: the request's s_min_uncond, else the setting."""
    return float(p.opts.s_min_uncond if p.s_min_uncond is None else p.s_min_uncond)


def make_rng(p, latent_shape, seeds, subseeds) -> ImageRNG:
    model = p.sd_model
    return ImageRNG(latent_shape, seeds, subseeds=subseeds, subseed_strength=p.subseed_strength,
                    seed_resize_from_h=p.seed_resize_from_h, seed_resize_from_w=p.seed_resize_from_w,
                    source=p.opts.randn_source, device=model_device(model),
                    eta_noise_seed_delta=p.opts.eta_noise_seed_delta, factor=model.vae_scale_factor)


def model_device(model) -> torch.device:
    return model.alphas_cumprod.device


class Progress:
    """k-diffusion step callback: job progress and, every N steps, a live preview."""

    def __init__(self, p, spass: SamplingPass, previewer):
        self.job, self.p, self.spass, self.previewer = p.job, p, spass, previewer
        opts = p.opts
        self.every = int(opts.show_progress_every_n_steps) if opts.live_previews_enable else 0

    def __call__(self, d: dict) -> None:
        if self.job is None:
            return
        step = self.spass.step_offset + int(d["i"]) + 1
        preview = None
        if self.every > 0 and self.previewer is not None and step % self.every == 0:
            preview = self.previewer(d["denoised"][:1])
        self.job.set_step(step, preview)


def run_pass(p, spass: SamplingPass, rng: ImageRNG, previewer=None) -> torch.Tensor:
    """Sample one pass and return the latent (the last prediction when interrupted or skipped)."""
    info = spass.sampler
    denoiser = samplers.make_denoiser(p.sd_model)
    img2img = spass.init_latent is not None
    scheduler = samplers.concrete_scheduler(info, spass.scheduler, p.opts)
    schedule, schedule_infotext = samplers.schedule_settings(info, scheduler, p.opts)
    p.extra_generation_params.update(schedule_infotext)
    sigmas, t_enc = samplers.pass_sigmas(info, spass.steps, denoiser, scheduler,
                                         spass.denoising_strength if img2img else None,
                                         bool(p.opts.img2img_fix_steps), **schedule)
    device = model_device(p.sd_model)
    sigmas = sigmas.to(device)
    noise = rng.next()
    if img2img and spass.noise_multiplier != 1.0:
        noise = noise * spass.noise_multiplier
    blend = None
    if spass.nmask is not None:
        blend = LatentBlend(spass.init_latent, spass.nmask)
    env = p.env
    cfg = CFGDenoiser(denoiser, total_steps=t_enc, max_batch=env.max_batch, hooks=env.callbacks.cfg,
                      interrupt=p.job, blend=blend, keep_uncond=info.cfg_pp,
                      cond_scale_multiplier=CFG_PP_SCALE if info.cfg_pp else 1.0,
                      ngms_all_steps=bool(p.opts.s_min_uncond_all), skip_early_cond=float(p.opts.skip_early_cond))
    noise_sampler = samplers.make_noise_sampler(info, noise, sigmas, rng, seeds=rng.seeds)
    callback = samplers.chain_callbacks(cfg.callback, Progress(p, spass, previewer))
    extra_args = {"cond": spass.cond, "uncond": spass.uncond, "cond_scale": spass.cfg_scale,
                  "image_cond": spass.image_cond, "s_min_uncond": negative_guidance_min_sigma(p)}
    kwargs = dict(extra_args=extra_args, callback=callback, noise_sampler=noise_sampler,
                  options=sampler_options(p, info))
    ratio = token_merging_ratio(p, for_hr=p.is_hr_pass)
    merging = tome.token_merging_patcher(p.sd_model, ratio) if ratio > 0 else nullcontext()
    with torch.no_grad(), merging:
        if img2img:
            samples = samplers.sample_img2img(cfg, spass.init_latent, noise, sigmas, info, **kwargs)
        else:
            samples = samplers.sample(cfg, noise, sigmas, info, **kwargs)
    p.extra_generation_params.update(cfg.infotext)
    if blend is not None:
        samples = blend(samples)
    return samples
