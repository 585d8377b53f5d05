"""A1111's `modules.rng` path: seeds and noise (modules.sampling.rng)."""
from modules.sampling.rng import ImageRNG, fix_seed, randn, slerp  # noqa: F401
