"""A checkpoint a tool keeps loaded beside the main model: the SD x4 upscaler (Extras, hires fix) and
the depth model of depth2img. Found in the checkpoint catalog by a cheap look at the file (the yaml
beside it, or the keys in the safetensors header); a user's checkpoint wins over a demo folder's.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from safetensors import safe_open

from modules.models.loader import load_model


def yaml_says(path: Path, target: str) -> bool | None:
    """Whether the yaml beside `path` names `target` (e.g. LatentUpscaleDiffusion); None without a yaml."""
    yaml = path.with_suffix(".yaml")
    return target in yaml.read_text(errors="replace") if yaml.exists() else None


def has_key_prefix(path: Path, prefix: str) -> bool:
    """Whether a .safetensors file holds a tensor whose key starts with `prefix` (reads the header only)."""
    if path.suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return any(k.startswith(prefix) for k in f.keys())
    except Exception:  # unreadable files are reported when someone loads them
        return False


class SideModel:
    """The model for one tool: the loaded checkpoint when `is_model` accepts it, else the first catalog
    checkpoint `is_checkpoint` accepts (users' before the demos), loaded once and kept."""

    def __init__(self, ctx, is_checkpoint: Callable[[Path], bool], is_model: Callable[[object], bool],
                 missing: str):
        self.ctx = ctx
        self.is_checkpoint, self.is_model = is_checkpoint, is_model
        self.missing = missing  # the error message when there is no such checkpoint: what to do
        self._lock = threading.Lock()
        self._model = None
        self._path: Path | None = None

    def checkpoint(self) -> Path | None:
        from modules.startup import is_demo  # here: startup builds the services that hold side models

        if self.ctx.models is None:  # the engine is not attached (a front end listing before start-up)
            return None
        found = [info for info in self.ctx.models.catalog.list() if self.is_checkpoint(Path(info.filename))]
        found.sort(key=is_demo)  # stable: catalog order within users' files and within the demos
        return Path(found[0].filename) if found else None

    def model(self):
        current = self.ctx.models.current
        if current is not None and self.is_model(current.model):
            return current.model
        with self._lock:
            path = self.checkpoint()
            if path is None:
                raise ValueError(self.missing)
            if self._path != path:
                self._model = None  # free the old one first
                manager = self.ctx.models
                self._model = load_model(path, device=manager.device, dtype=manager.dtype_unet,
                                         dtype_vae=manager.dtype_vae)
                self._path = path
            return self._model
