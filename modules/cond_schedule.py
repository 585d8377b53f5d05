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


# A cond is a (T, C) token tensor (v1/v2), or a dict of tensors for models with more than one input
# (SD3: {"crossattn": (T, C) context, "vector": (D,) pooled}, A1111's SDXL/SD3 names). Only the token
# tensor ("crossattn") has a length that may differ between prompts; the helpers below treat both kinds.
TOKENS = "crossattn"


def map_cond(cond, fn):
    """fn(key, tensor) applied to each tensor of a cond (a plain tensor is the "crossattn" one)."""
    return {k: fn(k, v) for k, v in cond.items()} if isinstance(cond, dict) else fn(TOKENS, cond)


def token_length(cond) -> int:
    return (cond[TOKENS] if isinstance(cond, dict) else cond).shape[-2]


def pad_to_same_length(tensors: list) -> list:
    """Equalise (T, C) conds of different token lengths by repeating each one's last vector,
    as A1111 does for cond/uncond of different chunk counts (both are multiples of 77)."""
    longest = max(token_length(t) for t in tensors)

    def pad(key, t):
        if key != TOKENS or t.shape[0] >= longest:
            return t
        return torch.cat([t, t[-1:].expand(longest - t.shape[0], -1)], dim=0)

    return [map_cond(t, pad) for t in tensors]


def stack(conds: list):
    """Per-prompt conds of one length -> a batch ((B, T, C), or a dict of batched tensors)."""
    if isinstance(conds[0], dict):
        return {k: torch.stack([c[k] for c in conds]) for k in conds[0]}
    return torch.stack(conds)


def cat(batches: list):
    """Batches (tensors or dicts of tensors) -> one batch, in order."""
    if isinstance(batches[0], dict):
        return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    return torch.cat(batches)


def rows(batch, index):
    """Rows of a batch (a slice or an index list) for tensors and dicts alike."""
    return map_cond(batch, lambda _k, t: t[index])


def batch_size(batch) -> int:
    return (batch[TOKENS] if isinstance(batch, dict) else batch).shape[0]
