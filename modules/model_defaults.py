"""What the generation tabs start with for a checkpoint: its family's defaults (size, steps, CFG,
sampler, schedule type, size step) and the samplers / schedule types the family can use.

The family comes from the loaded model (`model_family.of_model`), or, before it is loaded, from the
file's header (detection). The size is the file's own `modelspec.resolution` metadata when it has it
(Stability AI's files and the SD3 demo say it), else a v1/v2 yaml's image size (the v1 demo: 32), else
the family's native size (1024 for SD3 / SD3.5).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open

from modules.models import family as model_family
from modules.models.detect import detect
from modules.sampling import samplers
from modules.sampling.schedules import SCHEDULERS


@dataclass(frozen=True)
class ModelDefaults:
    family: str  # the family's name ("v1-inference", "sd3.5-medium", ...)
    title: str
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    scheduler: str
    size_step: int  # size sliders move in steps of this many pixels (16 for SD3: 2x2 latent patches)
    samplers: tuple[str, ...]  # the sampler names this family can use
    schedulers: tuple[str, ...]  # the schedule type labels this family can use
    flow: bool  # a rectified-flow family: skip-layer guidance and the shift setting apply

    @property
    def key(self) -> str:
        """What tells two checkpoints' defaults apart (the v1 demo and SD 1.5 share a family, not a size)."""
        return f"{self.family} {self.width}x{self.height}"


def schedulers_for(family: model_family.ModelFamily | None) -> list[str]:
    flow = family is not None and family.prediction == "flow"
    return [s.label for s in SCHEDULERS if not (flow and s.not_for_flow)]


def of_family(family: model_family.ModelFamily, size: tuple[int, int] | None = None) -> ModelDefaults:
    d = family.defaults
    width, height = size or (d.width, d.height)
    return ModelDefaults(family.name, family.title, width, height, d.steps, d.cfg_scale, d.sampler, d.scheduler,
                         d.size_step, tuple(s.name for s in samplers.available(family)),
                         tuple(schedulers_for(family)), family.prediction == "flow")


def file_resolution(path: str | Path) -> tuple[int, int] | None:
    """The `modelspec.resolution` a .safetensors file declares ("1024x1024"), or None."""
    if Path(path).suffix.lower() != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            value = (f.metadata() or {}).get("modelspec.resolution", "")
    except (SafetensorError, OSError):
        return None
    found = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", value)
    return (int(found.group(1)), int(found.group(2))) if found else None


def file_family(path: str | Path) -> model_family.ModelFamily | None:
    """The family of a checkpoint file from its header (no tensor read); None when it cannot be told."""
    if Path(path).suffix.lower() != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        return model_family.for_config(detect(shapes, filename=Path(path).name).config)
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError):
        return None


def for_checkpoint(model=None, path: str | Path | None = None, native_size: int | None = None) -> ModelDefaults:
    """Defaults for a loaded model (or, without one, the checkpoint file at path). native_size: the
    size a v1/v2 yaml says (used when the file declares none and the family is not a flow one)."""
    family = model_family.of_model(model) if model is not None else (file_family(path) if path else None)
    family = family or model_family.FAMILIES["v1-inference"]
    size = file_resolution(path) if path else None
    if size is None and native_size and family.prediction != "flow":
        size = (native_size, native_size)
    return of_family(family, size)
