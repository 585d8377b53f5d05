"""A1111's `modules.processing` helpers that modules/processing/__init__.py does not re-export from
the pipelines: get_fixed_seed, create_random_tensors, the latent-format constants."""
from __future__ import annotations

import random

from modules.sampling.rng import ImageRNG

opt_C = 4  # latent channels (SD 1.x / 2.x)  # noqa: N816 - A1111's names
opt_f = 8  # VAE downsampling factor


def get_fixed_seed(seed):
    """A1111: a seed of -1 (or empty) becomes a random one; anything else is kept."""
    if seed in ("", None) or (isinstance(seed, (int, float)) and int(seed) == -1):
        return int(random.randrange(4294967294))
    return seed


def create_random_tensors(shape, seeds, subseeds=None, subseed_strength: float = 0.0, seed_resize_from_h: int = 0,
                          seed_resize_from_w: int = 0, p=None):
    """A1111's initial noise for a batch: one seeded (C, H, W) tensor per seed, with variation seeds
    and "resize seed from", from the RNG source the p's options choose (CPU by default)."""
    source = getattr(getattr(p, "opts", None), "randn_source", "CPU") if p is not None else "CPU"
    sd_model = getattr(p, "sd_model", None) if p is not None else None
    device = next(sd_model.parameters()).device if sd_model is not None else "cpu"
    rng = ImageRNG(shape, seeds, subseeds=subseeds, subseed_strength=subseed_strength,
                   seed_resize_from_h=seed_resize_from_h, seed_resize_from_w=seed_resize_from_w, source=source,
                   device=device)
    return rng.first()
