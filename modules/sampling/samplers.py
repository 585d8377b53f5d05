"""Sampler registry over k-diffusion, sigma schedules, and the sampling entry points.

A sampler is a k-diffusion function `sample_x(model, x, sigmas, extra_args, callback, disable, ...)`
(plus DDIM, DDIM CFG++, PLMS, Restart and LCM written the same way in sampling.functions, UniPC in
sampling.unipc). `model` is any callable
`(x, sigma, **extra_args) -> denoised`: usually a CFGDenoiser around `make_denoiser(ldm)`.

txt2img:  sigmas = get_sigmas(info, steps, denoiser, scheduler)
          latent = sample(cfg, noise, sigmas, info, extra_args=..., noise_sampler=...)
img2img:  total, t_enc = img2img_steps(steps, strength); sigmas = get_sigmas(info, total, ...)
          latent = sample_img2img(cfg, init_latent, noise, sigmas[total - t_enc - 1:], info, ...)
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from k_diffusion import external as k_external
from k_diffusion import sampling as k_sampling

from modules.sampling import functions, unipc
from modules.sampling.cfg_denoiser import SamplingInterrupted
from modules.sampling.schedules import SCHEDULERS, Scheduler, build_sigmas, find_scheduler, option_kwargs


@dataclass(frozen=True)
class SamplerInfo:
    name: str  # A1111's display name, also the infotext's "Sampler" value
    function: Callable
    aliases: tuple[str, ...] = ()
    scheduler: str = "uniform"  # what "Automatic" means for this sampler
    discard_next_to_last_sigma: bool = False  # DPM2/3M: the penultimate step wastes a model call
    second_order: bool = False  # two model calls per step
    brownian_noise: bool = False  # SDE samplers: noise from a per-image seeded Brownian tree
    uses_ensd: bool = False  # stochastic: eta noise seed delta changes the image
    eta_default: float = 1.0  # A1111's "eta (ancestral)" option; DDIM uses "eta (DDIM)" = 0
    eta_option: str = "eta_ancestral"  # the setting eta comes from when the request has none
    fixed_options: dict = field(default_factory=dict)  # e.g. solver_type for "DPM++ 2M SDE Heun"
    settings: tuple[tuple[str, str], ...] = ()  # (keyword, setting): sampler options read from settings
    automatic: Callable | None = None  # opts -> Scheduler: "Automatic" decided by a setting (UniPC)
    cfg_pp: bool = False  # CFG++: the sampler reads the CFG denoiser's unconditional prediction
    # Every sampler here works on k-diffusion's x = x0 + sigma * eps (eps and v models, through
    # make_denoiser). A rectified-flow family (SD3) runs the same table with its own denoiser and
    # sigmas; a sampler whose update needs another form for flow gets an entry of its own.

    def accepts(self, option: str) -> bool:
        return option in inspect.signature(self.function).parameters


def _k(name: str, fn: str, aliases: list[str], **kw) -> SamplerInfo:
    return SamplerInfo(name, getattr(k_sampling, fn), tuple(aliases) + (fn.removeprefix("sample_"),), **kw)


SAMPLERS: tuple[SamplerInfo, ...] = (
    _k("DPM++ 2M", "sample_dpmpp_2m", ["k_dpmpp_2m"], scheduler="karras"),
    _k("DPM++ SDE", "sample_dpmpp_sde", ["k_dpmpp_sde"], scheduler="karras", second_order=True,
       brownian_noise=True),
    _k("DPM++ 2M SDE", "sample_dpmpp_2m_sde", ["k_dpmpp_2m_sde"], scheduler="exponential",
       brownian_noise=True),
    SamplerInfo("DPM++ 2M SDE Heun", k_sampling.sample_dpmpp_2m_sde, ("k_dpmpp_2m_sde_heun",),
                scheduler="exponential", brownian_noise=True, fixed_options={"solver_type": "heun"}),
    _k("DPM++ 2S a", "sample_dpmpp_2s_ancestral", ["k_dpmpp_2s_a"], scheduler="karras", uses_ensd=True,
       second_order=True),
    _k("DPM++ 3M SDE", "sample_dpmpp_3m_sde", ["k_dpmpp_3m_sde"], scheduler="exponential",
       discard_next_to_last_sigma=True, brownian_noise=True),
    _k("Euler a", "sample_euler_ancestral", ["k_euler_a", "k_euler_ancestral"], uses_ensd=True),
    _k("Euler", "sample_euler", ["k_euler"]),
    _k("LMS", "sample_lms", ["k_lms"]),
    _k("Heun", "sample_heun", ["k_heun"], second_order=True),
    _k("DPM2", "sample_dpm_2", ["k_dpm_2"], scheduler="karras", discard_next_to_last_sigma=True,
       second_order=True),
    _k("DPM2 a", "sample_dpm_2_ancestral", ["k_dpm_2_a"], scheduler="karras",
       discard_next_to_last_sigma=True, uses_ensd=True, second_order=True),
    _k("DPM fast", "sample_dpm_fast", ["k_dpm_fast"], uses_ensd=True),
    _k("DPM adaptive", "sample_dpm_adaptive", ["k_dpm_ad"], uses_ensd=True),
    SamplerInfo("Restart", functions.sample_restart, ("restart",), scheduler="karras", second_order=True),
    SamplerInfo("DDIM", functions.sample_ddim, ("ddim",), scheduler="ddim", eta_default=0.0,
                eta_option="eta_ddim", uses_ensd=True),
    SamplerInfo("DDIM CFG++", functions.sample_ddim_cfgpp, ("ddim_cfgpp",), scheduler="ddim", eta_default=0.0,
                eta_option="eta_ddim", uses_ensd=True, cfg_pp=True),
    SamplerInfo("PLMS", functions.sample_plms, ("plms",), scheduler="ddim"),
    SamplerInfo("UniPC", unipc.sample_unipc, ("unipc",), automatic=unipc.automatic_scheduler,
                settings=(("variant", "uni_pc_variant"), ("order", "uni_pc_order"),
                          ("lower_order_final", "uni_pc_lower_order_final"))),
    SamplerInfo("LCM", functions.sample_lcm, ("k_lcm", "lcm"), scheduler="sgm_uniform"),
)

_BY_KEY: dict[str, SamplerInfo] = {}
for _info in SAMPLERS:
    for _key in (_info.name, *_info.aliases):
        _BY_KEY.setdefault(_key.lower(), _info)


def find_sampler(name: str) -> SamplerInfo:
    """By A1111 name or alias ("Euler a", "k_euler_a", "euler_ancestral"), case-insensitively."""
    info = _BY_KEY.get(str(name or "").strip().lower())
    if info is None:
        raise ValueError(f"unknown sampler {name!r}: use one of {', '.join(s.name for s in SAMPLERS)}")
    return info


def resolve_sampler_and_scheduler(sampler_name: str | None, scheduler_name: str | None = None,
                                  default: str = "Euler a") -> tuple[SamplerInfo, Scheduler]:
    """Accept old combined names ("DPM++ 2M Karras" -> DPM++ 2M + Karras) as A1111 does; a schedule
    equal to the sampler's default becomes "Automatic"."""
    name = (sampler_name or default).strip()
    scheduler = find_scheduler(scheduler_name)
    if name.lower() not in _BY_KEY:
        for candidate in SCHEDULERS[1:]:
            for label in (candidate.label, *candidate.aliases):
                if name.lower().endswith(" " + label.lower()):
                    scheduler, name = candidate, name[: -len(label) - 1]
                    break
    info = find_sampler(name)
    if scheduler.name == info.scheduler:
        scheduler = SCHEDULERS[0]
    return info, scheduler


def make_denoiser(model, quantize: bool = False):
    """k-diffusion's wrapper for a LatentDiffusion-like model (alphas_cumprod, apply_model,
    parameterization "eps" or "v")."""
    parameterization = getattr(model, "parameterization", "eps")
    if parameterization == "v":
        return k_external.CompVisVDenoiser(model, quantize=quantize)
    if parameterization == "eps":
        return k_external.CompVisDenoiser(model, quantize=quantize)
    raise ValueError(f"unsupported model parameterization {parameterization!r}: expected 'eps' or 'v'")


def concrete_scheduler(info: SamplerInfo, scheduler: str | Scheduler | None, opts=None) -> Scheduler:
    """The schedule that runs: "Automatic" is the sampler's own default (for UniPC: its skip-type
    setting, read from opts)."""
    found = scheduler if isinstance(scheduler, Scheduler) else find_scheduler(scheduler)
    if found.function is not None:
        return found
    return info.automatic(opts) if info.automatic is not None else find_scheduler(info.scheduler)


def schedule_settings(info: SamplerInfo, scheduler: str | Scheduler | None, opts) -> tuple[dict, dict]:
    """(get_sigmas keywords, infotext fields) from the app's settings (rho, the Beta parameters,
    discarding the penultimate sigma), as A1111 records them; opts None: the schedules' defaults."""
    if opts is None:
        return {}, {}
    kwargs, infotext = option_kwargs(concrete_scheduler(info, scheduler, opts), opts)
    if getattr(opts, "always_discard_next_to_last_sigma", False):
        kwargs["always_discard_next_to_last_sigma"] = True
        infotext["Discard penultimate sigma"] = True
    return kwargs, infotext


def get_sigmas(info: SamplerInfo, steps: int, denoiser, scheduler: str | Scheduler | None = None,
               always_discard_next_to_last_sigma: bool = False, **options) -> torch.Tensor:
    """`steps` + 1 sigmas for this sampler and schedule type, from the denoiser's discrete schedule;
    `options`: the schedule's own settings (schedules.option_kwargs)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    found = concrete_scheduler(info, scheduler)
    discard = info.discard_next_to_last_sigma or always_discard_next_to_last_sigma
    sigmas = build_sigmas(found, steps + 1 if discard else steps, denoiser, **options)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


def img2img_steps(steps: int, denoising_strength: float, fix_steps: bool = False) -> tuple[int, int]:
    """(schedule length, t_enc) for img2img, as A1111; the last t_enc + 1 steps of the schedule run.

    Default: a `steps` schedule, t_enc = int(strength * steps). With fix_steps (A1111's "do exactly
    the amount of steps the slider specifies"): a steps / strength schedule, t_enc = steps - 1.
    Strength 0 gives t_enc = -1: nothing runs and the input comes back unchanged."""
    strength = min(float(denoising_strength), 0.999)
    if strength <= 0:
        return steps, -1
    if fix_steps:
        return int(steps / strength), steps - 1
    return steps, int(strength * steps)


def img2img_sigmas(sigmas: torch.Tensor, total_steps: int, t_enc: int) -> torch.Tensor:
    """The tail of the schedule that img2img runs, starting part-way down: t_enc + 1 steps."""
    return sigmas[total_steps - t_enc - 1:]


def pass_sigmas(info: SamplerInfo, steps: int, denoiser, scheduler: str | Scheduler | None,
                denoising_strength: float | None = None, fix_steps: bool = False,
                **options) -> tuple[torch.Tensor, int]:
    """(sigmas, t_enc) for one sampling pass: the whole `steps` schedule from noise, or with a
    denoising strength (img2img) the tail of the schedule that img2img_steps picks."""
    if denoising_strength is None:
        return get_sigmas(info, steps, denoiser, scheduler, **options), steps
    total, t_enc = img2img_steps(steps, denoising_strength, fix_steps)
    return img2img_sigmas(get_sigmas(info, total, denoiser, scheduler, **options), total, t_enc), t_enc


@dataclass
class SamplerOptions:
    """The request's sampler parameters (None = the sampler's default)."""

    eta: float | None = None
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0
    extra: dict = field(default_factory=dict)  # keyword options from settings (SamplerInfo.settings)


def options_from_settings(info: SamplerInfo, opts) -> dict:
    """The sampler's own options from the app settings (UniPC's variant, order...)."""
    return {kwarg: getattr(opts, key) for kwarg, key in info.settings if hasattr(opts, key)}


def sampler_kwargs(info: SamplerInfo, sigmas: torch.Tensor, options: SamplerOptions | None = None,
                   noise_sampler=None) -> dict:
    """Keyword arguments for info.function: the schedule in the form it wants, and the options it takes."""
    options = options or SamplerOptions()
    params = inspect.signature(info.function).parameters
    kwargs = dict(info.fixed_options)
    if "sigmas" in params:
        kwargs["sigmas"] = sigmas
    if "sigma_min" in params:  # DPM fast/adaptive: a range, and the last sigma (0) is not allowed
        kwargs["sigma_min"] = float(sigmas[-2])
        kwargs["sigma_max"] = float(sigmas[0])
    if "n" in params:
        kwargs["n"] = len(sigmas) - 1
    if "eta" in params:
        kwargs["eta"] = info.eta_default if options.eta is None else options.eta
    for name in ("s_churn", "s_tmin", "s_tmax", "s_noise"):
        if name in params:
            kwargs[name] = getattr(options, name)
    kwargs.update({k: v for k, v in options.extra.items() if k in params})
    if noise_sampler is not None and "noise_sampler" in params:
        kwargs["noise_sampler"] = noise_sampler
    return kwargs


def infotext_params(info: SamplerInfo, options: SamplerOptions | None) -> dict:
    """The non-default sampler parameters, under A1111's infotext names."""
    options = options or SamplerOptions()
    out = {}
    if info.accepts("eta") and options.eta is not None and options.eta != info.eta_default:
        out["Eta DDIM" if info.eta_option == "eta_ddim" else "Eta"] = options.eta
    if info.accepts("s_churn"):
        defaults = {"s_churn": ("Sigma churn", 0.0), "s_tmin": ("Sigma tmin", 0.0),
                    "s_tmax": ("Sigma tmax", math.inf), "s_noise": ("Sigma noise", 1.0)}
        for name, (key, default) in defaults.items():
            value = getattr(options, name)
            if value != default and not (name == "s_tmax" and value == 0):
                out[key] = value
    return out


def brownian_noise_sampler(x: torch.Tensor, sigmas: torch.Tensor, seeds: list[int]):
    """SDE samplers' noise: one Brownian tree per image, seeded with that image's seed, so an image
    comes out the same whatever batch it is in (A1111's default for DPM++ SDE samplers)."""
    if len(seeds) != x.shape[0]:
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for a batch of {x.shape[0]}")
    positive = sigmas[sigmas > 0]
    return k_sampling.BrownianTreeNoiseSampler(x, positive.min(), positive.max(), seed=list(seeds))


def make_noise_sampler(info: SamplerInfo, x: torch.Tensor, sigmas: torch.Tensor, image_rng=None,
                       seeds: list[int] | None = None):
    """The noise sampler this sampler should get: a seeded Brownian tree for SDE samplers, the
    per-image generators (rng.ImageRNG) for ancestral ones; None if it needs no noise."""
    if not info.accepts("noise_sampler"):
        return None
    if info.brownian_noise and seeds is not None:
        return brownian_noise_sampler(x, sigmas, seeds)
    return image_rng.noise_sampler() if image_rng is not None else None


def chain_callbacks(*callbacks):
    """One k-diffusion step callback calling several (None entries are skipped)."""
    active = [c for c in callbacks if c is not None]

    def callback(d):
        for c in active:
            c(d)

    return callback if active else None


def run_sampler(model, x: torch.Tensor, sigmas: torch.Tensor, info: SamplerInfo, *, extra_args=None,
                callback=None, noise_sampler=None, options: SamplerOptions | None = None,
                disable: bool = True) -> torch.Tensor:
    """Run info.function from the already-noised x. On interrupt/skip (raised by the CFG denoiser),
    return the last denoised prediction, as A1111 does."""
    kwargs = sampler_kwargs(info, sigmas, options, noise_sampler)
    try:
        return info.function(model, x, extra_args=extra_args or {}, callback=callback, disable=disable,
                             **kwargs)
    except SamplingInterrupted as stop:
        return stop.latent if stop.latent is not None else x


def sample(model, x_noise: torch.Tensor, sigmas: torch.Tensor, info: SamplerInfo, **kw) -> torch.Tensor:
    """txt2img: unit noise scaled to the first sigma, sampled down to sigma 0."""
    return run_sampler(model, x_noise * sigmas[0], sigmas, info, **kw)


def sample_img2img(model, init_latent: torch.Tensor, x_noise: torch.Tensor, sigmas: torch.Tensor,
                   info: SamplerInfo, **kw) -> torch.Tensor:
    """img2img: the init latent noised to sigmas[0] (the img2img_sigmas tail), then sampled."""
    if len(sigmas) < 2:  # denoising strength 0: nothing to do
        return init_latent
    return run_sampler(model, init_latent + x_noise * sigmas[0], sigmas, info, **kw)
