"""The LDM denoising objective (Ho et al. 2020; Rombach et al. 2022), eps or v (Salimans & Ho 2022).

Works on any model with the LatentDiffusion contract: `apply_model(x_noisy, t, cond)`,
`alphas_cumprod` (1000 values) and `parameterization` ("eps" or "v").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _expand(a: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    return a.to(t.device)[t].float().reshape(-1, *([1] * (ndim - 1)))


def q_sample(x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
             alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (DDPM eq. 4)."""
    abar = _expand(alphas_cumprod, t, x_start.ndim)
    return abar.sqrt() * x_start + (1 - abar).sqrt() * noise


def target(parameterization: str, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
           alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """What the network predicts: eps, or v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
    if parameterization == "eps":
        return noise
    if parameterization == "v":
        abar = _expand(alphas_cumprod, t, x_start.ndim)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x_start
    raise ValueError(f"unknown parameterization {parameterization!r}; use 'eps' or 'v'")


def min_snr_weight(parameterization: str, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                   gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023): stop easy, low-noise steps from dominating."""
    abar = alphas_cumprod.to(t.device)[t].float()
    snr = abar / (1 - abar)
    clipped = snr.clamp(max=gamma)
    return clipped / snr if parameterization == "eps" else clipped / (snr + 1)


def high_noise_weight(t: torch.Tensor, alphas_cumprod: torch.Tensor, max_weight: float) -> torch.Tensor:
    """1 / SNR, clipped to [1, max_weight]: at high noise, weight eps errors like x0 errors.

    An eps loss counts an x0 error at SNR s with weight s, so where the layout is decided (s << 1)
    a wrong position costs almost nothing and the prompt's "on the left" is learned last. Measured
    on the demo model: colour right 20/20 after 600 steps, side still at chance.
    """
    abar = alphas_cumprod.to(t.device)[t].float()
    return (1 - abar).div(abar).clamp(1.0, max_weight)


def draw_timesteps(model, batch: int, generator: torch.Generator | None = None,
                   shared_pairs: bool = False) -> torch.Tensor:
    """A random timestep per sample ([B], on the CPU); with shared_pairs sample i and i + B/2 share one."""
    n = batch // 2 if shared_pairs else batch
    t = torch.randint(0, model.alphas_cumprod.shape[0], (n,), generator=generator, device="cpu")
    return t.repeat(2) if shared_pairs else t


def diffusion_loss(model, z: torch.Tensor, cond, generator: torch.Generator | None = None,
                   snr_gamma: float | None = None, high_noise_max: float | None = None,
                   shared_pairs: bool = False, timesteps: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of the model's prediction at a random timestep per sample.

    shared_pairs: the two halves of the batch share timesteps and noise (see shapes.batch mirror_pairs).
    timesteps: [B] drawn by the caller (draw_timesteps), when it needs to know them; else drawn here.

    z: scaled latents [B, C, h, w] (`get_first_stage_encoding` output); cond as `apply_model` takes it.
    """
    alphas_cumprod = model.alphas_cumprod
    if timesteps is None:
        timesteps = draw_timesteps(model, z.shape[0], generator, shared_pairs)
    t = timesteps.to(z.device)
    n = z.shape[0] // 2 if shared_pairs else z.shape[0]
    noise = torch.randn((n, *z.shape[1:]), generator=generator, device="cpu").to(z.device, z.dtype)
    if shared_pairs:  # sample i and i + B/2 get the same noise
        noise = noise.repeat(2, 1, 1, 1)
    x_noisy = q_sample(z, t, noise, alphas_cumprod).to(z.dtype)
    out = model.apply_model(x_noisy, t, cond)
    tgt = target(model.parameterization, z, t, noise, alphas_cumprod)
    per_sample = F.mse_loss(out.float(), tgt.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma is not None:
        per_sample = per_sample * min_snr_weight(model.parameterization, t, alphas_cumprod, snr_gamma)
    if high_noise_max is not None:
        per_sample = per_sample * high_noise_weight(t, alphas_cumprod, high_noise_max)
    return per_sample.mean()
