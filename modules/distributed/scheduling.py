"""Which waiting job starts on which idle worker: model affinity first, loading a checkpoint last.

Reading a checkpoint costs seconds to minutes (and evicts another when a worker is at its
`sd_checkpoints_limit`), so in FIFO order:
1. a job goes to an idle worker that already holds its checkpoint;
2. a job whose checkpoint no live worker holds goes to an idle worker (it must be loaded somewhere),
   preferably one with a free model slot, else one whose models no waiting job wants;
3. a job whose checkpoint only busy workers hold is loaded on an idle worker with a free model slot
   (nothing is evicted); else it waits for them - unless more jobs wait for that checkpoint than
   there are workers holding it: then it is loaded on an idle worker too (evicting its least
   recently used model). So a lone job waits one job's time rather than evict a model.
A job that needs no model (extras) takes any idle worker. Pure functions over plain values, so the
policy is tested without a cluster.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Hashable


@dataclass
class Slot:
    key: Hashable
    models: tuple[str, ...]   # checkpoints held, most recently used first
    limit: int = 1            # sd_checkpoints_limit there
    busy: bool = False


@dataclass
class Want:
    key: Any
    model: str | None         # None: needs no checkpoint


def _holders(model: str, slots: list[Slot]) -> list[Slot]:
    return [s for s in slots if model in s.models]


def _load_choice(idle: list[Slot], wanted: Counter) -> Slot:
    """The idle worker where a load hurts least: a free model slot, else nothing it holds is wanted."""
    def cost(s: Slot) -> tuple[int, int]:
        full = len(s.models) >= s.limit
        evicted = s.models[s.limit - 1] if full else None  # the least recently used goes
        return (int(full), wanted[evicted] if evicted else 0)
    return min(idle, key=cost)


def _take(slot: Slot, want: Want) -> None:
    if want.model is not None:
        rest = tuple(m for m in slot.models if m != want.model)
        slot.models = (want.model, *rest)[: max(1, slot.limit)]
    slot.busy = True


def plan(slots: list[Slot], waiting: list[Want]) -> list[tuple[Want, Slot]]:
    """Assignments for now: (job, worker) pairs; jobs left out keep waiting."""
    out: list[tuple[Want, Slot]] = []
    pending = list(waiting)

    def idle() -> list[Slot]:
        return [s for s in slots if not s.busy]

    def assign(want: Want, slot: Slot) -> None:
        _take(slot, want)
        pending.remove(want)
        out.append((want, slot))

    for want in list(pending):  # 1. affinity
        free = idle()
        if not free:
            return out
        if want.model is None:
            continue
        mine = [s for s in free if want.model in s.models]
        if mine:
            assign(want, min(mine, key=lambda s: s.models.index(want.model)))
    for want in list(pending):  # 2. and 3.: somebody has to load it
        free = idle()
        if not free:
            break
        wanted = Counter(w.model for w in pending)
        if want.model is not None:
            holders = _holders(want.model, slots)
            roomy = any(len(s.models) < s.limit for s in free)
            if holders and wanted[want.model] <= len(holders) and not roomy:
                continue  # a busy worker holding it will take it soon
        assign(want, _load_choice(free, wanted))
    return out
