"""X/Y/Z plot axes: how a text of values is parsed and how one value is applied to a job.

Values are comma-separated (quotes allowed, as CSV). Number axes also take ranges: "1-5" (every
integer), "1-5 (+2)" (step), "1-10 [4]" (4 evenly spaced values), for floats too.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from modules import shared
from modules.sampling import samplers, schedules

RANGE = re.compile(r"^\s*([+-]?[\d.]+)\s*-\s*([+-]?[\d.]+)(?:\s*\(([+-]?[\d.]+)\s*\)|\s*\[(\d+)\s*\])?\s*$")


def split_values(text: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text or ""), skipinitialspace=True))
    return [v.strip() for row in rows for v in row if v.strip()]


def _range(value: str, cast: Callable) -> list | None:
    m = RANGE.match(value)
    if m is None:
        return None
    start, end = float(m.group(1)), float(m.group(2))
    if m.group(4):  # [count]: evenly spaced
        n = int(m.group(4))
        if n < 1:
            raise ValueError(f"{value!r}: the count in [] must be at least 1")
        return [cast(start + (end - start) * i / max(n - 1, 1)) for i in range(n)]
    step = float(m.group(3)) if m.group(3) else 1.0
    if step == 0 or (end - start) * step < 0:
        raise ValueError(f"{value!r}: the step does not lead from {m.group(1)} to {m.group(2)}")
    out, x = [], start
    while (x <= end + 1e-9) if step > 0 else (x >= end - 1e-9):
        out.append(cast(x))
        x += step
    return out


def parse_numbers(text: str, cast: Callable) -> list:
    out = []
    for value in split_values(text):
        expanded = _range(value, cast) if cast is int or "-" in value[1:] else None
        if expanded is not None:
            out += expanded
            continue
        try:
            out.append(cast(float(value)) if cast is int else cast(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    return out


def _set(field: str) -> Callable:
    def apply(p, value) -> None:
        setattr(p, field, value)
    return apply


def _sampler(name: str) -> str:
    return samplers.find_sampler(name).name


def _schedule(name: str) -> str:
    return schedules.find_scheduler(name).label


def _size(value: str) -> tuple[int, int]:
    m = re.match(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$", value)
    if m is None:
        raise ValueError(f"size {value!r} must look like 512x768")
    return int(m.group(1)), int(m.group(2))


def _apply_size(p, value) -> None:
    p.width, p.height = value


def _apply_prompt_sr(p, value) -> None:
    search, replace = value
    if search not in p.prompt and search not in (p.negative_prompt or ""):
        raise ValueError(f"Prompt S/R: {search!r} is not in the prompt or the negative prompt")
    p.prompt = p.prompt.replace(search, replace)
    p.negative_prompt = (p.negative_prompt or "").replace(search, replace)


def _apply_clip_skip(p, value) -> None:
    p.override_settings = {**p.override_settings, "CLIP_stop_at_last_layers": int(value)}


def _override(key: str, convert: Callable) -> Callable[[Any, Any], None]:
    """A setting changed for the cell's job (as A1111's apply_override)."""
    def apply(p, value) -> None:
        p.override_settings = {**p.override_settings, key: convert(value)}
    return apply


def _apply_checkpoint(p, value) -> None:
    models = shared.models
    loaded = models.load(value)
    p.sd_model = loaded.model
    p.env = dataclasses.replace(p.env, model_name=models.sd_model_name, model_hash=models.sd_model_hash)


def _checkpoint(value: str) -> str:
    info = shared.models.catalog.get(value)
    if info is None:
        raise ValueError(f"checkpoint {value!r} not found; one of: {', '.join(shared.models.catalog.titles())}")
    return info.title


@dataclass
class Axis:
    label: str
    parse: Callable[[str], list]
    apply: Callable[[Any, Any], None]
    format: Callable[[Any], str] = str
    choices: Callable[[], list[str]] | None = None


def _strings(convert: Callable) -> Callable[[str], list]:
    return lambda text: [convert(v) for v in split_values(text)]


def _prompt_sr(text: str) -> list:
    values = split_values(text)
    if not values:
        return []
    return [(values[0], v) for v in values]


def _seeds(text: str) -> list[int]:
    return [random.randrange(4294967294) if s == -1 else s for s in parse_numbers(text, int)]


AXES = [
    Axis("Nothing", lambda text: [None], lambda p, v: None, lambda v: ""),
    Axis("Seed", _seeds, _set("seed")),
    Axis("Steps", lambda t: parse_numbers(t, int), _set("steps")),
    Axis("CFG Scale", lambda t: parse_numbers(t, float), _set("cfg_scale")),
    Axis("Sampler", _strings(_sampler), _set("sampler_name"), choices=lambda: [s.name for s in samplers.SAMPLERS]),
    Axis("Schedule type", _strings(_schedule), _set("scheduler"),
         choices=lambda: [s.label for s in schedules.SCHEDULERS]),
    Axis("Checkpoint name", _strings(_checkpoint), _apply_checkpoint, lambda v: v.split(" [")[0],
         choices=lambda: shared.models.catalog.titles()),
    Axis("Prompt S/R", _prompt_sr, _apply_prompt_sr, lambda v: v[1]),
    Axis("Size", _strings(_size), _apply_size, lambda v: f"{v[0]}x{v[1]}"),
    Axis("Denoising", lambda t: parse_numbers(t, float), _set("denoising_strength")),
    Axis("Clip skip", lambda t: parse_numbers(t, int), _apply_clip_skip),
    Axis("Negative Guidance minimum sigma", lambda t: parse_numbers(t, float), _set("s_min_uncond")),
    Axis("UniPC Order", lambda t: parse_numbers(t, int), _override("uni_pc_order", int)),
    Axis("Token merging ratio", lambda t: parse_numbers(t, float), _set("token_merging_ratio")),
    Axis("Token merging ratio high-res", lambda t: parse_numbers(t, float), _set("token_merging_ratio_hr")),
]


def find_axis(choice) -> Axis:
    """By index (the UI dropdown, A1111's API) or by label."""
    if isinstance(choice, (int, float)) and not isinstance(choice, bool):
        if not 0 <= int(choice) < len(AXES):
            raise ValueError(f"axis type {choice} is out of range (0-{len(AXES) - 1})")
        return AXES[int(choice)]
    for axis in AXES:
        if str(choice).strip().lower() == axis.label.lower():
            return axis
    raise ValueError(f"unknown axis type {choice!r}; one of: {', '.join(a.label for a in AXES)}")


def label(axis: Axis, value) -> str:
    return f"{axis.label}: {axis.format(value)}" if axis.label != "Nothing" else ""
