"""An exactly solvable diffusion model for sampler tests.

If the data is x0 ~ N(mu, s^2) (independently per element), the optimal denoiser is known in closed
form: E[x0 | x0 + sigma * eps = x] = mu + s^2 / (s^2 + sigma^2) * (x - mu), and the probability-flow
ODE maps x_T = sigma_T * z to x0 = mu + s / sqrt(s^2 + sigma_T^2) * (x_T - mu). This object exposes
the LatentDiffusion interface k-diffusion's CompVis wrappers need (alphas_cumprod, parameterization,
apply_model(x_t, t, cond) returning eps or v), so samplers can be checked against exact answers.

mu depends on the conditioning, to make CFG observable: mu = base_mu + mean(context row) (+ mean of
the c_concat image conditioning row for hybrid-style dict conditioning).
"""
from __future__ import annotations

import torch


def sd_alphas_cumprod() -> torch.Tensor:
    """Stable Diffusion's "scaled linear" schedule (linear_start 0.00085, linear_end 0.012)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0).float()


class GaussianDataModel:
    def __init__(self, mu: float = 0.3, s: float = 0.5, parameterization: str = "eps"):
        self.base_mu = mu
        self.s = s
        self.parameterization = parameterization
        self.alphas_cumprod = sd_alphas_cumprod()
        self.log_sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt().log()
        self.calls: list[int] = []  # rows per apply_model call

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Log-linear interpolation between the discrete levels (the inverse of the wrapper's)."""
        t = t.float()
        low = t.floor().long().clamp(0, 999)
        high = t.ceil().long().clamp(0, 999)
        w = t - low
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()

    def mu_for(self, cond, batch: int) -> torch.Tensor:
        mu = torch.full((batch,), self.base_mu)
        if isinstance(cond, dict):
            mu = mu + cond["c_concat"][0].float().mean(dim=(1, 2, 3))
            cond = cond["c_crossattn"][0]
        if cond is not None:
            mu = mu + cond.float().mean(dim=(1, 2))
        return mu.view(batch, 1, 1, 1)

    def exact_denoised(self, x: torch.Tensor, sigma: torch.Tensor, mu) -> torch.Tensor:
        sigma = sigma.view(-1, 1, 1, 1)
        return mu + self.s**2 / (self.s**2 + sigma**2) * (x - mu)

    def ode_solution(self, x_start: torch.Tensor, sigma_start: float, mu) -> torch.Tensor:
        return mu + self.s / (self.s**2 + sigma_start**2) ** 0.5 * (x_start - mu)

    def apply_model(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        self.calls.append(x_t.shape[0])
        sigma = self.t_to_sigma(t).view(-1, 1, 1, 1)
        a = 1 / (1 + sigma**2)  # alpha_bar at this noise level
        x = x_t / a.sqrt()  # k-diffusion's x = x0 + sigma * eps
        mu = self.mu_for(cond, x_t.shape[0])
        x0 = self.exact_denoised(x, sigma, mu)
        eps = (x - x0) / sigma
        if self.parameterization == "v":
            return a.sqrt() * eps - (1 - a).sqrt() * x0
        return eps


class FlowGaussianDataModel:
    """The rectified-flow analogue: x_sigma = (1 - sigma) x0 + sigma z with x0 ~ N(mu, s^2), and
    apply_model returns the exact velocity E[z - x0 | x] = (x - E[x0 | x]) / sigma at model time
    t = 1000 sigma, where E[x0 | x] = mu + (1 - sigma) s^2 / ((1 - sigma)^2 s^2 + sigma^2) (x - (1 - sigma) mu).
    The probability-flow ODE keeps each sample's standard score: x_sigma = (1 - sigma) mu +
    sqrt((1 - sigma)^2 s^2 + sigma^2) u, so pure noise z at sigma 1 ends at x0 = mu + s z.
    Conditioning as GaussianDataModel (mu = base_mu + mean of the context row; SD3-style dict conds
    use their "crossattn" tensor)."""

    parameterization = "flow"

    def __init__(self, mu: float = 0.3, s: float = 0.5):
        from modules.models.family import FAMILIES

        self.base_mu = mu
        self.s = s
        self.family = FAMILIES["sd3"]
        self.calls: list[int] = []
        self.skip_calls: list[tuple] = []  # skip_layers of the calls that had some

    def mu_for(self, cond, batch: int) -> torch.Tensor:
        mu = torch.full((batch,), self.base_mu)
        if isinstance(cond, dict):
            cond = cond["crossattn"]
        if cond is not None:
            mu = mu + cond.float().mean(dim=(1, 2))
        return mu.view(batch, 1, 1, 1)

    def exact_denoised(self, x: torch.Tensor, sigma: torch.Tensor, mu) -> torch.Tensor:
        sigma = sigma.view(-1, 1, 1, 1)
        alpha = 1 - sigma
        return mu + alpha * self.s**2 / (alpha**2 * self.s**2 + sigma**2) * (x - alpha * mu)

    def ode_solution(self, noise: torch.Tensor, mu) -> torch.Tensor:
        return mu + self.s * noise

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond=None, skip_layers=()) -> torch.Tensor:
        self.calls.append(x.shape[0])
        if skip_layers:
            self.skip_calls.append(tuple(skip_layers))
        sigma = (t.float() / 1000).view(-1, 1, 1, 1)
        mu = self.mu_for(cond, x.shape[0])
        if skip_layers:  # a stand-in for a network without some blocks: a slightly wrong mean
            mu = mu + 0.1
        return (x - self.exact_denoised(x, sigma, mu)) / sigma
