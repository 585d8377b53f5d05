"""Noise schedules ("Schedule type"): steps -> a descending list of sigmas ending in 0.

Names and labels are A1111's (the API's `scheduler` field takes either). The discrete ones read the
model's own 1000 training noise levels through k-diffusion's DiscreteSchedule (`CompVisDenoiser` is
one); the continuous ones only need sigma_min/sigma_max (Karras et al. 2022, k-diffusion). For
rectified-flow models the denoiser is sampling.flow.FlowDenoiser, which offers the same attributes
over its shifted sigmas (its "Normal" is Stability AI's and diffusers' schedule); the two types
marked `not_for_flow` are not offered for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from k_diffusion import sampling as k_sampling


def uniform(n, sigma_min, sigma_max, inner_model, device="cpu"):
    """n timesteps evenly spaced over the model's whole range (k-diffusion's default)."""
    return inner_model.get_sigmas(n).to(device)


def sgm_uniform(n, sigma_min, sigma_max, inner_model, device="cpu"):
    """Evenly spaced timesteps from sigma_max to sigma_min, the last one dropped (SGM/ComfyUI style)."""
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    ts = torch.linspace(float(start), float(end), n + 1)[:-1]
    sigmas = [float(inner_model.t_to_sigma(t)) for t in ts] + [0.0]
    return torch.tensor(sigmas, dtype=torch.float32, device=device)


def simple(n, sigma_min, sigma_max, inner_model, device="cpu"):
    """Every len/n-th of the model's discrete sigmas, from the top."""
    model_sigmas = inner_model.sigmas
    stride = len(model_sigmas) / n
    sigmas = [float(model_sigmas[-(1 + int(i * stride))]) for i in range(n)] + [0.0]
    return torch.tensor(sigmas, dtype=torch.float32, device=device)


def normal(n, sigma_min, sigma_max, inner_model, device="cpu"):
    """n timesteps evenly spaced from sigma_max to sigma_min (both included)."""
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    sigmas = [float(inner_model.t_to_sigma(t)) for t in torch.linspace(float(start), float(end), n)]
    return torch.tensor(sigmas + [0.0], dtype=torch.float32, device=device)


def ddim(n, sigma_min, sigma_max, inner_model, device="cpu"):
    """The original DDIM timesteps 1, 1 + c, 1 + 2c, ... (c = 1000 // n), "uniform" discretisation."""
    model_sigmas = inner_model.sigmas
    stride = max(len(model_sigmas) // n, 1)
    sigmas = [float(model_sigmas[t]) for t in range(1, len(model_sigmas), stride)]
    return torch.tensor(sigmas[::-1] + [0.0], dtype=torch.float32, device=device)


def karras(n, sigma_min, sigma_max, inner_model=None, device="cpu", rho=7.0):

    return k_sampling.get_sigmas_karras(n, sigma_min, sigma_max, rho=rho, device=device)


def exponential(n, sigma_min, sigma_max, inner_model=None, device="cpu"):

    return k_sampling.get_sigmas_exponential(n, sigma_min, sigma_max, device=device)


def polyexponential(n, sigma_min, sigma_max, inner_model=None, device="cpu", rho=1.0):

    return k_sampling.get_sigmas_polyexponential(n, sigma_min, sigma_max, rho=rho, device=device)


def kl_optimal(n, sigma_min, sigma_max, inner_model=None, device="cpu"):
    """Evenly spaced in arctan(sigma) (Sabour et al. 2024, "Align Your Steps", the KL-optimal
    schedule). As A1111: n + 1 sigmas from sigma_max down to sigma_min, with no final 0."""
    alpha_min, alpha_max = torch.arctan(torch.tensor(sigma_min)), torch.arctan(torch.tensor(sigma_max))
    frac = torch.arange(n + 1) / n
    return torch.tan(frac * alpha_min + (1.0 - frac) * alpha_max).to(device)


# NVIDIA's optimised 10-step schedule for SD 1.5 (research.nvidia.com/labs/toronto-ai/AlignYourSteps/
# howto.html); A1111 uses it for every non-SDXL model, and so do we.
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)


def align_your_steps(n, sigma_min, sigma_max, inner_model=None, device="cpu"):
    """AYS_SD15 (11 sigmas), log-linearly interpolated to n sigmas when n != 11, then a final 0."""

    sigmas = np.array(AYS_SD15, dtype=np.float64)
    if n != len(sigmas):
        xs = np.linspace(0, 1, len(sigmas))
        sigmas = np.exp(np.interp(np.linspace(0, 1, n), xs, np.log(sigmas[::-1])))[::-1]
    return torch.tensor([*sigmas.tolist(), 0.0], dtype=torch.float32, device=device)


def beta(n, sigma_min, sigma_max, inner_model=None, device="cpu", alpha=0.6, beta=0.6):
    """Sigmas at the quantiles of a Beta(alpha, beta) distribution (Lee et al. 2024, "Beta Sampling is
    All You Need"), linear between sigma_min and sigma_max, then 0; alpha = beta = 0.6 spends more
    steps at both ends. A1111's formula (scipy's beta.ppf)."""
    from scipy import stats  # lazy: scipy.stats takes ~0.5 s to import, only the Beta schedule needs it

    quantiles = stats.beta.ppf(1 - np.linspace(0, 1, n), alpha, beta)
    sigmas = [sigma_min + float(q) * (sigma_max - sigma_min) for q in quantiles]
    return torch.tensor(sigmas + [0.0], dtype=torch.float32, device=device)


@dataclass(frozen=True)
class ScheduleOption:
    """A setting a schedule reads: passed as `kwarg`, recorded in the infotext under `infotext`."""
    kwarg: str
    setting: str  # modules.options key
    infotext: str
    default: float  # the schedule's own value
    always_recorded: bool = True  # False: used and recorded only when set (non-zero) and not `default`


@dataclass(frozen=True)
class Scheduler:
    name: str  # the API value, e.g. "karras"
    label: str  # what the UI and the infotext show, e.g. "Karras"
    function: Callable | None  # None: the sampler's own default ("Automatic")
    aliases: tuple[str, ...] = ()
    options: tuple[ScheduleOption, ...] = ()  # settings passed to `function` (see option_kwargs)
    not_for_flow: str = ""  # why it is not offered for rectified-flow models (SD3); "" = it is

    def option(self, kwarg: str) -> ScheduleOption | None:
        return next((o for o in self.options if o.kwarg == kwarg), None)


def _rho(default: float) -> tuple[ScheduleOption, ...]:
    return (ScheduleOption("rho", "rho", "Schedule rho", default, always_recorded=False),)


_BETA_OPTIONS = (ScheduleOption("alpha", "beta_dist_alpha", "Beta schedule alpha", 0.6),
                 ScheduleOption("beta", "beta_dist_beta", "Beta schedule beta", 0.6))


def option_kwargs(scheduler: Scheduler, opts) -> tuple[dict, dict]:
    """(keyword arguments for the schedule, infotext fields) from the settings, as A1111 records them:
    rho only when set (non-zero) and not the schedule's default, the Beta parameters always."""
    kwargs, infotext = {}, {}
    for option in scheduler.options:
        value = float(getattr(opts, option.setting, option.default))
        if not option.always_recorded and value in (0.0, option.default):
            continue
        kwargs[option.kwarg] = value
        infotext[option.infotext] = value
    return kwargs, infotext


SCHEDULERS: tuple[Scheduler, ...] = (
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", uniform),
    Scheduler("karras", "Karras", karras, options=_rho(7.0)),
    Scheduler("exponential", "Exponential", exponential),
    Scheduler("polyexponential", "Polyexponential", polyexponential, options=_rho(1.0)),
    Scheduler("sgm_uniform", "SGM Uniform", sgm_uniform, aliases=("SGMUniform",)),
    Scheduler("kl_optimal", "KL Optimal", kl_optimal),
    Scheduler("align_your_steps", "Align Your Steps", align_your_steps,
              not_for_flow="its sigmas are SD 1.5's noise levels (14.6 down to 0.03); a flow model's lie in (0, 1]"),
    Scheduler("simple", "Simple", simple),
    Scheduler("normal", "Normal", normal),
    Scheduler("ddim", "DDIM", ddim, not_for_flow="the DDIM timesteps start below sigma 1, where a flow model's "
              "txt2img starts from pure noise: use Normal or Simple"),
    Scheduler("beta", "Beta", beta, options=_BETA_OPTIONS),
)

_BY_KEY = {}
for _s in SCHEDULERS:
    for _key in (_s.name, _s.label, *_s.aliases):
        _BY_KEY[_key.lower()] = _s


def for_flow(scheduler: Scheduler, title: str = "this model") -> Scheduler:
    """The schedule type for a rectified-flow model, or a ValueError saying why it is not offered."""
    if scheduler.not_for_flow:
        raise ValueError(f"the {scheduler.label} schedule type is not available for {title} (a rectified-flow "
                         f"model): {scheduler.not_for_flow}")
    return scheduler


def find_scheduler(name: str | None) -> Scheduler:
    """Look a schedule type up by API name, label or alias, case-insensitively; None/"" -> Automatic."""
    if not name:
        return SCHEDULERS[0]
    found = _BY_KEY.get(str(name).strip().lower())
    if found is None:
        labels = ", ".join(s.label for s in SCHEDULERS)
        raise ValueError(f"unknown schedule type {name!r}: use one of {labels}")
    return found


def build_sigmas(scheduler: Scheduler, steps: int, inner_model, sigma_min: float | None = None,
                 sigma_max: float | None = None, **options) -> torch.Tensor:
    """Sigmas for `steps` steps from a concrete (non-Automatic) scheduler; sigma_min/max default to
    the model's smallest/largest training noise level; `options` are the scheduler's own (see
    option_kwargs)."""
    if scheduler.function is None:
        raise ValueError("'Automatic' is resolved by the sampler: pass its default schedule")
    kwargs = {
        "sigma_min": float(inner_model.sigmas[0]) if sigma_min is None else sigma_min,
        "sigma_max": float(inner_model.sigmas[-1]) if sigma_max is None else sigma_max,
        "inner_model": inner_model,
    }
    kwargs.update({k: v for k, v in options.items() if v is not None and scheduler.option(k)})
    return scheduler.function(steps, **kwargs).float().cpu()
