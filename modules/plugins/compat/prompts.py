"""A1111's `modules.prompt_parser` classes that modules/prompt_parser.py (the engine's pure parser)
does not define: SdConditioning (a list of prompts carrying the image size and whether it is the
negative prompt) and the namedtuples of A1111's learned conditionings with reconstruct_cond_batch.
This web UI's denoiser uses its own schedule objects (modules/cond_schedule.py); these are for
extension code that builds or reads A1111-shaped conditionings itself."""
from __future__ import annotations

from collections import namedtuple

import torch

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])
ComposableScheduledPromptConditioning = namedtuple("ComposableScheduledPromptConditioning",
                                                   ["schedules", "weight"])


class MulticondLearnedConditioning:
    def __init__(self, shape, batch):
        self.shape = shape  # the shape of the batch of prompts (one entry per image)
        self.batch: list[list[ComposableScheduledPromptConditioning]] = batch


class SdConditioning(list):
    """A list of prompts with the size of the image they are for (A1111 passes this to
    get_learned_conditioning; SDXL models read width/height from it)."""

    def __init__(self, prompts, is_negative_prompt: bool = False, width: int | None = None,
                 height: int | None = None, copy_from=None):
        super().__init__()
        self.extend(prompts)
        if copy_from is None:
            copy_from = prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width = width or getattr(copy_from, "width", None)
        self.height = height or getattr(copy_from, "height", None)


def reconstruct_cond_batch(c: list[list[ScheduledPromptConditioning]], current_step: int) -> torch.Tensor:
    """The conds of every image at current_step: (B, T, C) (A1111; tensors of one length assumed)."""
    rows = []
    for schedule in c:
        entry = next((s for s in schedule if current_step <= s.end_at_step), schedule[-1])
        rows.append(entry.cond)
    return torch.stack(rows)


def reconstruct_multicond_batch(c: MulticondLearnedConditioning, current_step: int):
    """(conds_list, tensor): [[(row, weight), ...] per image], and every AND part's cond at the step."""
    tensors, conds_list = [], []
    for composable_prompts in c.batch:
        conds_for_batch = []
        for composable in composable_prompts:
            schedule = composable.schedules
            entry = next((s for s in schedule if current_step <= s.end_at_step), schedule[-1])
            conds_for_batch.append((len(tensors), composable.weight))
            tensors.append(entry.cond)
        conds_list.append(conds_for_batch)
    return conds_list, torch.stack(tensors)


def attribute(name: str):
    if name in globals() and not name.startswith("_") and name not in ("attribute", "annotations", "namedtuple"):
        return globals()[name]
    raise AttributeError(f"module 'modules.prompt_parser' has no attribute {name!r} in this web UI "
                         "(README: Extensions, A1111's module surface)")
