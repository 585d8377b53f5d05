"""Tiny random-weight models for tests: `make_tiny_model("tiny-v1")` etc.

Configs live in tests/configs/ (the original yaml schema, small sizes):
tiny-v1, tiny-v1-inpainting (9-ch), tiny-v2 (eps), tiny-v2-v (v), tiny-v2-depth (5-ch), tiny-x4.
All but tiny-x4 keep the VAE factor 8; text encoders are width 32, 2 layers, 2 heads with the
real 49408-token vocabulary, so the real tokenizer works.
"""
from __future__ import annotations

from pathlib import Path

import torch

from modules.ldm.config import build_from_config
from modules.ldm.latent_diffusion import LatentDiffusion

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TINY_CONFIGS = ("tiny-v1", "tiny-v1-inpainting", "tiny-v2", "tiny-v2-v", "tiny-v2-depth", "tiny-x4")


def tiny_config_path(name: str) -> Path:
    if name not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny config {name!r}; one of {', '.join(TINY_CONFIGS)}")
    return CONFIG_DIR / f"{name}.yaml"


def make_tiny_model(name: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> LatentDiffusion:
    """A seeded random-weight model in eval mode (same seed, same weights); global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_from_config(tiny_config_path(name), device="cpu", dtype=dtype)
