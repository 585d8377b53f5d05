"""Noise schedules ("Schedule type"): steps -> a descending list of sigmas ending in 0.

Names and labels are A1111's (the API's `scheduler` field takes either). The discrete ones read the
model's own 1000 training noise levels through k-diffusion's DiscreteSchedule (`CompVisDenoiser` is
one); the continuous ones only need sigma_min/sigma_max (Karras et al. 2022, k-diffusion).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


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
    from k_diffusion import sampling as k_sampling  # lazy: importing k_diffusion takes seconds

    return k_sampling.get_sigmas_karras(n, sigma_min, sigma_max, rho=rho, device=device)


def exponential(n, sigma_min, sigma_max, inner_model=None, device="cpu"):
    from k_diffusion import sampling as k_sampling

    return k_sampling.get_sigmas_exponential(n, sigma_min, sigma_max, device=device)


def polyexponential(n, sigma_min, sigma_max, inner_model=None, device="cpu", rho=1.0):
    from k_diffusion import sampling as k_sampling

    return k_sampling.get_sigmas_polyexponential(n, sigma_min, sigma_max, rho=rho, device=device)


@dataclass(frozen=True)
class Scheduler:
    name: str  # the API value, e.g. "karras"
    label: str  # what the UI and the infotext show, e.g. "Karras"
    function: Callable | None  # None: the sampler's own default ("Automatic")
    takes_rho: bool = False
    aliases: tuple[str, ...] = ()


SCHEDULERS: tuple[Scheduler, ...] = (
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", uniform),
    Scheduler("karras", "Karras", karras, takes_rho=True),
    Scheduler("exponential", "Exponential", exponential),
    Scheduler("polyexponential", "Polyexponential", polyexponential, takes_rho=True),
    Scheduler("sgm_uniform", "SGM Uniform", sgm_uniform, aliases=("SGMUniform",)),
    Scheduler("simple", "Simple", simple),
    Scheduler("normal", "Normal", normal),
    Scheduler("ddim", "DDIM", ddim),
)

_BY_KEY = {}
for _s in SCHEDULERS:
    for _key in (_s.name, _s.label, *_s.aliases):
        _BY_KEY[_key.lower()] = _s


def find_scheduler(name: str | None) -> Scheduler:
    """Look a schedule type up by API name, label or alias, case-insensitively; None/"" -> Automatic."""
    if not name:
        return SCHEDULERS[0]
    found = _BY_KEY.get(str(name).strip().lower())
    if found is None:
        labels = ", ".join(s.label for s in SCHEDULERS)
        raise ValueError(f"unknown schedule type {name!r}: use one of {labels}")
    return found


def build_sigmas(scheduler: Scheduler, steps: int, inner_model, rho: float | None = None,
                 sigma_min: float | None = None, sigma_max: float | None = None) -> torch.Tensor:
    """Sigmas for `steps` steps from a concrete (non-Automatic) scheduler; sigma_min/max default to
    the model's smallest/largest training noise level."""
    if scheduler.function is None:
        raise ValueError("'Automatic' is resolved by the sampler: pass its default schedule")
    kwargs = {
        "sigma_min": float(inner_model.sigmas[0]) if sigma_min is None else sigma_min,
        "sigma_max": float(inner_model.sigmas[-1]) if sigma_max is None else sigma_max,
        "inner_model": inner_model,
    }
    if scheduler.takes_rho and rho:
        kwargs["rho"] = rho
    return scheduler.function(steps, **kwargs).float().cpu()
