"""Rectified flow (SD3 / SD3.5) seen through k-diffusion's denoiser interface.

A flow model is trained on straight paths x_sigma = (1 - sigma) * x0 + sigma * noise, sigma in (0, 1],
and predicts the velocity v = noise - x0 at model time t = 1000 * sigma (Esser et al. 2024, sec. 2).
The denoised estimate is D(x, sigma) = x - sigma * v, and the probability-flow ODE in k-diffusion's
form, dx/dsigma = (x - D) / sigma, holds unchanged: so every deterministic k-diffusion sampler
(Euler, Heun, LMS, DPM2, DPM++ 2M) solves it as it is. What differs is the noise: a flow latent at
sigma carries the data scaled by alpha = 1 - sigma, so starting, noising (img2img) and the
ancestral / SDE samplers' re-noising use alpha (see flow_samplers.py), not the variance-exploding
x0 + sigma * noise.

`FlowDenoiser` offers what the schedule types read from k-diffusion's DiscreteSchedule: `sigmas`
(the 1000 shifted sigmas of t = 1/1000 .. 1, ascending), `sigma_to_t` (the model time 1000 * sigma)
and `t_to_sigma` (the schedule: shifted sigma of t / 1000). This pair is ComfyUI's
ModelSamplingDiscreteFlow pair (timestep / sigma), so "Normal" and "SGM Uniform" run linspace over
model times and shift them again: the "Normal" schedule then equals Stability AI's reference and
diffusers' FlowMatchEulerDiscreteScheduler (whose last non-zero sigma, 0.008929 at shift 3, is the
shifted sigma of the shifted 0.001).
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch

from modules.models.family import ModelFamily


class FlowDenoiser:
    """`(x, sigma, **kwargs) -> denoised` for a model whose `apply_model(x, t, cond, ...)` returns the
    flow velocity at t = 1000 * sigma (the family's `denoised`); kwargs (cond, skip_layers) go to
    apply_model. shift: the schedule's shift instead of the family's."""

    prediction = "flow"

    def __init__(self, model, family: ModelFamily, shift: float | None = None):
        if family.prediction != "flow" or family.schedule.kind != "flow":
            raise ValueError(f"FlowDenoiser needs a flow model family, got {family.name} ({family.prediction})")
        self.inner_model = model
        self.family = family
        schedule = family.schedule if not shift else replace(family.schedule, shift=float(shift))
        self.schedule = schedule
        self.shift = schedule.shift
        self.sigmas = schedule.table()  # ascending: sigma(1/1000) .. sigma(1) = 1
        self.log_sigmas = self.sigmas.log()
        self.sigma_data = 1.0

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def sigma_to_t(self, sigma: torch.Tensor, quantize=None) -> torch.Tensor:
        """The model time of a sigma (the network's timestep input)."""
        return self.schedule.timestep(torch.as_tensor(sigma))

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The schedule's sigma at time t in [0, 1000] (shifted)."""
        return self.schedule.sigma(torch.as_tensor(t, dtype=torch.float64) / self.schedule.timesteps).float()

    def get_sigmas(self, n: int | None = None) -> torch.Tensor:
        """"Uniform": n sigmas evenly spaced in t from 1 to 1/1000 (the table's ends), then 0."""
        if n is None:
            return torch.cat([self.sigmas.flip(0), self.sigmas.new_zeros([1])])
        steps = self.schedule.timesteps
        t = torch.linspace(1.0, 1.0 / steps, n, dtype=torch.float64)
        return torch.cat([self.schedule.sigma(t).float(), torch.zeros(1)])

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        v = self.inner_model.apply_model(x, self.sigma_to_t(sigma).to(x.device), **kwargs)
        return self.family.denoised(x, sigma.to(x.device), v.to(x))

    forward = __call__

    @staticmethod
    def noise_scaling(sigma: torch.Tensor, noise: torch.Tensor, latent: torch.Tensor | None) -> torch.Tensor:
        """The latent at noise level sigma: (1 - sigma) * latent + sigma * noise (latent None: pure
        noise scaled, what txt2img starts from; at sigma 1 that is the noise itself)."""
        sigma = torch.as_tensor(sigma, dtype=noise.dtype, device=noise.device)
        if latent is None:
            return noise * sigma
        return latent * (1 - sigma) + noise * sigma


def noise_scaling(denoiser, sigma, noise: torch.Tensor, latent: torch.Tensor | None) -> torch.Tensor:
    """A latent at noise level sigma for any denoiser: its own `noise_scaling` (flow), else
    k-diffusion's variance-exploding latent + sigma * noise (eps / v models)."""
    own = getattr(denoiser, "noise_scaling", None)
    if own is not None:
        return own(sigma, noise, latent)
    return noise * sigma if latent is None else latent + noise * sigma


# -- the rectified-flow noise algebra the RF samplers share --------------------------------------------
def half_log_snr(sigma: float) -> float:
    """lambda = log(alpha / sigma) with alpha = 1 - sigma: -inf at sigma 1 (pure noise), +inf at 0."""
    if sigma >= 1.0:
        return -math.inf
    if sigma <= 0.0:
        return math.inf
    return math.log((1.0 - sigma) / sigma)


def sigma_of_half_log_snr(lam: float) -> float:
    """The inverse of half_log_snr: sigma = 1 / (1 + e^lambda)."""
    if lam == -math.inf:
        return 1.0
    if lam == math.inf:
        return 0.0
    return 1.0 / (1.0 + math.exp(lam))


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float, float]:
    """(sigma_down, scale, noise_std) of one ancestral step from sigma to sigma_next on a flow path.

    Dividing a flow latent by alpha gives the variance-exploding latent x / alpha = x0 + s * noise with
    s = sigma / alpha, where k-diffusion's ancestral split holds: s_up = eta * sqrt(s_next^2 (s^2 -
    s_next^2) / s^2) (capped at s_next), s_down = sqrt(s_next^2 - s_up^2) (eta 1: DDPM's posterior
    variance, Ho et al. 2020). Back on the flow path: the sampler takes its ODE step to sigma_down =
    s_down / (1 + s_down), then x_next = scale * x + noise_std * noise with scale = alpha_next /
    alpha_down and noise_std = alpha_next * s_up, so x_next again carries (1 - sigma_next) * x0 and
    noise of std sigma_next. From sigma 1 (s infinite) the step goes down to s_down = s_next * sqrt(1 -
    eta^2)."""
    sigma, sigma_next = float(sigma), float(sigma_next)
    if not eta or sigma_next <= 0.0:
        return sigma_next, 1.0, 0.0
    s_next = sigma_next / (1.0 - sigma_next)
    ratio = 0.0 if sigma >= 1.0 else s_next / (sigma / (1.0 - sigma))
    s_up = min(s_next, eta * s_next * math.sqrt(max(1.0 - ratio * ratio, 0.0)))
    s_down = math.sqrt(max(s_next * s_next - s_up * s_up, 0.0))
    sigma_down = s_down / (1.0 + s_down)
    alpha_next, alpha_down = 1.0 - sigma_next, 1.0 - sigma_down
    return sigma_down, alpha_next / alpha_down, alpha_next * s_up
