"""Seeds and initial/sampler noise, reproducible per image as in A1111.

- seed -1 means a random seed; image i of a batch uses seed + i (and subseed + i).
- a variation seed ("subseed") with a strength blends the seed's noise towards the subseed's noise by
  spherical interpolation;
- "resize seed from W/H" makes the noise at another size and pastes it, centred, into noise of the
  real size, so a composition found at 512x512 roughly survives at 512x768;
- the noise source is "CPU" (torch CPU generator, the same on every machine), "GPU" (the device's own
  generator) or "NV" (NVIDIA's CUDA generator reproduced anywhere, see rng_philox);
- every image keeps its own generator, so the extra noise of ancestral/SDE samplers is seeded too and
  one image of a batch can be re-made alone.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from modules.sampling import rng_philox

RNG_SOURCES = ("GPU", "CPU", "NV")
MAX_SEED = 2**32 - 1  # A1111's random seeds are in [0, 2**32 - 1]


def fix_seed(seed: int | None, rand: random.Random | None = None) -> int:
    """-1 / None / "" -> a random seed; anything else as int."""
    if seed is None or seed == "" or int(seed) == -1:
        return int((rand or random).randrange(MAX_SEED))
    return int(seed)


def batch_seeds(seed: int, count: int) -> list[int]:
    """Seeds of a job's images: seed, seed + 1, ... (A1111's all_seeds)."""
    return [int(seed) + i for i in range(count)]


def _check_source(source: str) -> str:
    if source not in RNG_SOURCES:
        raise ValueError(f"unknown RNG source {source!r}: use one of {', '.join(RNG_SOURCES)}")
    return source


def create_generator(seed: int, source: str = "CPU", device: torch.device | str = "cpu"):
    """A seeded generator: torch.Generator for CPU/GPU, rng_philox.Generator for NV."""
    if _check_source(source) == "NV":
        return rng_philox.Generator(seed)
    gen_device = "cpu" if source == "CPU" or torch.device(device).type == "mps" else device
    return torch.Generator(gen_device).manual_seed(int(seed))


def randn_from(generator, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise of `shape` from a generator made by create_generator (advances it)."""
    if isinstance(generator, rng_philox.Generator):
        return torch.from_numpy(generator.randn(tuple(shape))).to(device)
    return torch.randn(tuple(shape), generator=generator, device=generator.device).to(device)


def randn(seed: int, shape: Sequence[int], source: str = "CPU", device="cpu") -> torch.Tensor:
    """Noise for one seed from a fresh generator (no shared state is touched)."""
    return randn_from(create_generator(seed, source, device), shape, device)


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from low (val=0) to high (val=1).

    Like A1111 the vectors are taken along dim 1 of a (C, H, W) noise tensor (per channel and
    column), so variation seeds give A1111's images."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:  # nearly parallel: slerp is numerically unstable, lerp is exact enough
        return low * (1 - val) + high * val
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (
        torch.sin(val * omega) / so
    ).unsqueeze(1) * high


def paste_centered(noise: torch.Tensor, into: torch.Tensor) -> torch.Tensor:
    """Copy the centre of `noise` (C, h, w) into the centre of `into` (C, H, W), cropping whichever is
    larger (A1111's "resize seed from width/height")."""
    out = into.clone()
    dx = (into.shape[2] - noise.shape[2]) // 2
    dy = (into.shape[1] - noise.shape[1]) // 2
    w = noise.shape[2] if dx >= 0 else noise.shape[2] + 2 * dx
    h = noise.shape[1] if dy >= 0 else noise.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    out[:, ty:ty + h, tx:tx + w] = noise[:, sy:sy + h, sx:sx + w]
    return out


class ImageRNG:
    """Noise for a batch of images, each from its own seeded generator.

    `first()` is the initial noise (with variation and resize-from applied); each later `next()` is
    the sampler's extra noise for one step (ancestral samplers), from the same per-image generators,
    or from generators seeded with seed + eta_noise_seed_delta (A1111's ENSD option) when that is set.

    shape: one image's latent shape (C, H, W); factor: the VAE downsampling factor (to convert
    seed_resize_from_w/h, which are in pixels, to latent size).
    """

    def __init__(self, shape: Sequence[int], seeds: Sequence[int], subseeds: Sequence[int] | None = None,
                 subseed_strength: float = 0.0, seed_resize_from_h: int = 0, seed_resize_from_w: int = 0,
                 source: str = "CPU", device="cpu", eta_noise_seed_delta: int = 0, factor: int = 8):
        if len(shape) != 3:
            raise ValueError(f"ImageRNG wants one image's latent shape (C, H, W), got {tuple(shape)}")
        self.shape = tuple(int(s) for s in shape)
        self.seeds = [int(s) for s in seeds]
        self.subseeds = list(subseeds) if subseeds is not None else None
        self.subseed_strength = float(subseed_strength)
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.source = _check_source(source)
        self.device = device
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self.factor = factor
        self.generators = [create_generator(s, source, device) for s in self.seeds]
        self.is_first = True

    def _noise_shape(self) -> tuple[int, int, int]:
        if self.seed_resize_from_h <= 0 or self.seed_resize_from_w <= 0:
            return self.shape
        return (self.shape[0], self.seed_resize_from_h // self.factor, self.seed_resize_from_w // self.factor)

    def _subseed(self, i: int) -> int:
        return 0 if i >= len(self.subseeds) else int(self.subseeds[i])

    def first(self) -> torch.Tensor:
        noise_shape = self._noise_shape()
        resized = noise_shape != self.shape
        xs = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators, strict=True)):
            if resized:
                noise = randn(seed, noise_shape, self.source, "cpu")
            else:
                noise = randn_from(generator, self.shape, "cpu")
            if self.subseeds is not None and self.subseed_strength != 0:
                subnoise = randn(self._subseed(i), noise_shape, self.source, "cpu")
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                noise = paste_centered(noise, randn_from(generator, self.shape, "cpu"))
            xs.append(noise)
        if self.eta_noise_seed_delta:
            self.generators = [create_generator(s + self.eta_noise_seed_delta, self.source, self.device)
                               for s in self.seeds]
        return torch.stack(xs).to(self.device)

    def next(self) -> torch.Tensor:
        """The first call gives first(); later calls give fresh per-image noise."""
        if self.is_first:
            self.is_first = False
            return self.first()
        return torch.stack([randn_from(g, self.shape, "cpu") for g in self.generators]).to(self.device)

    def noise_sampler(self):
        """k-diffusion's noise_sampler(sigma, sigma_next) drawing from these generators."""
        return lambda sigma, sigma_next: self.next()
