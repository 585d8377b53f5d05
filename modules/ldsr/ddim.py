"""DDIM (Song et al. 2021) as the LDM code's DDIMSampler runs it for LDSR.

Timesteps "uniform": range(0, T, T // steps) + 1 (991, 981, ..., 1 for 100 steps; for step counts
that do not divide T this gives a few more steps than asked, as the original). Where that range would
reach T (steps 3, 9, 27, 37, 111: the original indexes past the schedule and fails), the step at T is
left out. With a_t the
cumulative alpha at the step, a_prev the one of the next step (alphas_cumprod[0] after the last):

    x0    = (x - sqrt(1 - a_t) eps) / sqrt(a_t)
    sigma = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    x     = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z,   z ~ N(0, I)

LDSR uses eta = 1 (a fresh noise draw every step). Noise comes from one generator: x_T first, then
one draw per step, in that order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, C, H, W], t [B] long) -> eps


@dataclass
class DDIMSchedule:
    timesteps: np.ndarray  # ascending, e.g. 1, 11, ..., 991
    alphas: np.ndarray  # a_t per step (float64)
    alphas_prev: np.ndarray
    sigmas: np.ndarray

    def __len__(self) -> int:
        return len(self.timesteps)


def ddim_timesteps(steps: int, num_timesteps: int = 1000) -> np.ndarray:
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"DDIM steps must be between 1 and {num_timesteps}, got {steps}")
    ts = np.arange(0, num_timesteps, num_timesteps // steps) + 1
    return ts[ts < num_timesteps]


def make_schedule(alphas_cumprod: torch.Tensor, steps: int, eta: float = 1.0) -> DDIMSchedule:
    a = alphas_cumprod.detach().cpu().double().numpy()
    ts = ddim_timesteps(steps, len(a))
    alphas = a[ts]
    alphas_prev = np.concatenate([[a[0]], a[ts[:-1]]])
    sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
    return DDIMSchedule(ts, alphas, alphas_prev, sigmas)


class Stop(Exception):
    """Raised by `should_stop` checks: sampling ends with the last x0 prediction."""


def sample(eps_fn: EpsFn, shape: tuple, schedule: DDIMSchedule, generator: torch.Generator,
           device: torch.device | str = "cpu", callback: Optional[Callable[[int, int], None]] = None,
           should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
    """x_T ~ N(0, I) of `shape` -> x_0 in float32. callback(done, total) after every step;
    should_stop() before every step: True ends sampling early with the last x0 prediction."""
    def randn() -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)

    x = randn()
    x0 = x
    total = len(schedule)
    for i, index in enumerate(reversed(range(total))):
        if should_stop is not None and should_stop():
            return x0
        t = torch.full((shape[0],), int(schedule.timesteps[index]), device=device, dtype=torch.long)
        eps = eps_fn(x, t).float()
        a_t, a_prev, sigma = (float(v[index]) for v in (schedule.alphas, schedule.alphas_prev, schedule.sigmas))
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        x = a_prev ** 0.5 * x0 + (1 - a_prev - sigma ** 2) ** 0.5 * eps + sigma * randn()
        if callback is not None:
            callback(i + 1, total)
    return x
