"""A1111's `modules.sd_vae_approx` path, for extensions: cheap_approximation(sample), the linear
latent -> RGB preview of SD 1/2 latents (modules.images.approx_latent_to_rgb), in [-1, 1] as A1111's.
Nothing in the project imports this module."""
from __future__ import annotations

import torch

from modules.images import LATENT_RGB_FACTORS


def cheap_approximation(sample: torch.Tensor) -> torch.Tensor:
    """(4, h, w) or (B, 4, h, w) latents -> RGB in about [-1, 1] (h, w kept)."""
    factors = LATENT_RGB_FACTORS.to(sample.device, sample.dtype)
    if sample.ndim == 3:
        return torch.einsum("lhw,lr->rhw", sample, factors)
    return torch.einsum("blhw,lr->brhw", sample, factors)
