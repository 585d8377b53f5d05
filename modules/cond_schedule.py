"""Conditioning as data: what the prompt side hands to the CFG denoiser.

A prompt with prompt editing (`[a:b:10]`) or alternation (`[a|b]`) has a different text, and so a
different conditioning tensor, at different sampling steps; a prompt with `AND` has several weighted
sub-prompts (composable diffusion). These two small types carry exactly that, so the sampler side
never parses prompts and the prompt side never sees sigmas.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ScheduledCond:
    """One (sub-)prompt's conditioning over the sampling steps.

    entries: (end_step, cond) pairs sorted by end_step; cond is (T, C) with T a multiple of 77
    (or a dict of such tensors for models with extra conditioning). At step s (counted from 0) the
    first entry with s <= end_step applies, as in A1111.
    """

    entries: list[tuple[int, torch.Tensor]]

    def at(self, step: int) -> torch.Tensor:
        for end_step, cond in self.entries:
            if step <= end_step:
                return cond
        return self.entries[-1][1]

    def change_steps(self) -> list[int]:
        """The steps after which the conditioning changes (for tests and logging)."""
        return [end for end, _ in self.entries[:-1]]


@dataclass
class MultiCond:
    """A batch's positive conditioning: per image, the AND sub-prompts with their weights."""

    batch: list[list[tuple[ScheduledCond, float]]] = field(default_factory=list)

    def at(self, step: int) -> tuple[list[torch.Tensor], list[list[tuple[int, float]]]]:
        """Flatten to (conds, index): conds is one (T, C) tensor per sub-prompt of every image;
        index[i] lists (position in conds, weight) for image i."""
        conds: list[torch.Tensor] = []
        index: list[list[tuple[int, float]]] = []
        for subprompts in self.batch:
            row = []
            for schedule, weight in subprompts:
                row.append((len(conds), weight))
                conds.append(schedule.at(step))
            index.append(row)
        return conds, index


def pad_to_same_length(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Equalise (T, C) tensors of different token lengths by repeating each one's last vector,
    as A1111 does for cond/uncond of different chunk counts (both are multiples of 77)."""
    longest = max(t.shape[0] for t in tensors)
    out = []
    for t in tensors:
        if t.shape[0] < longest:
            t = torch.cat([t, t[-1:].expand(longest - t.shape[0], -1)], dim=0)
        out.append(t)
    return out
