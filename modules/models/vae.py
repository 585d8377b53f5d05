"""VAE override: replace a loaded model's `first_stage_model` weights with a separate VAE file.

Choices, as A1111's `sd_vae` setting:
- "Automatic": a VAE named after the checkpoint: `<checkpoint basename>.vae.{safetensors,pt,ckpt}`
  beside it, else a file in `models/VAE` whose name starts with the checkpoint's basename; if there
  is none, the checkpoint's own VAE.
- "None": the checkpoint's own VAE.
- a VAE name (file name relative to `models/VAE`, or a `*.vae.*` file's name beside the checkpoints).

Swapping assigns new tensors to `first_stage_model`; the checkpoint's own tensors are kept by the
caller (`swap_vae` returns them), so undoing is another swap and reads nothing from disk.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from modules.models.state_dict import read_state_dict

VAE_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
AUTOMATIC, NONE = "Automatic", "None"


@dataclass(frozen=True)
class VaeInfo:
    filename: str  # absolute path
    name: str  # what the sd_vae setting and the infotext's `VAE:` use

    @property
    def basename(self) -> str:
        return Path(self.filename).name


def _is_vae_file(path: Path, in_vae_dir: bool) -> bool:
    name = path.name.lower()
    return name.endswith(VAE_EXTENSIONS) and (in_vae_dir or ".vae." in name)


def vae_beside(checkpoint: str | Path) -> Path | None:
    """`foo.safetensors` -> `foo.vae.safetensors` / `foo.vae.pt` / `foo.vae.ckpt` if one exists."""
    stem = Path(checkpoint).with_suffix("")
    for ext in VAE_EXTENSIONS:
        candidate = stem.with_name(stem.name + ".vae" + ext)
        if candidate.is_file():
            return candidate
    return None


class VaeCatalog:
    def __init__(self, vae_dir: Path | str, ckpt_dirs: Iterable[Path | str] = ()):
        self.vae_dir = Path(vae_dir)
        self.ckpt_dirs = [Path(d) for d in ckpt_dirs]
        self._lock = threading.Lock()
        self._vaes: dict[str, VaeInfo] = {}

    def refresh(self) -> list[VaeInfo]:
        found: dict[str, VaeInfo] = {}
        for root, in_vae_dir in [(self.vae_dir, True)] + [(d, False) for d in self.ckpt_dirs]:
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                if path.is_file() and _is_vae_file(path, in_vae_dir):
                    name = path.relative_to(root).as_posix()
                    found.setdefault(name, VaeInfo(str(path.resolve()), name))
        with self._lock:
            self._vaes = found
        return list(found.values())

    def names(self) -> list[str]:
        """The choices for the sd_vae setting."""
        with self._lock:
            return [AUTOMATIC, NONE, *self._vaes]

    def get(self, name: str) -> VaeInfo | None:
        with self._lock:
            if name in self._vaes:
                return self._vaes[name]
            return next((v for v in self._vaes.values() if v.basename == name), None)

    def resolve(self, choice: str, checkpoint: str | Path | None) -> VaeInfo | None:
        """The VAE file to use for a checkpoint, or None for the checkpoint's own."""
        if choice in (None, "", NONE):
            return None
        if choice == AUTOMATIC:
            return self._automatic(checkpoint) if checkpoint else None
        info = self.get(choice)
        if info is None:
            raise ValueError(f"VAE {choice!r} not found. Available: {', '.join(self.names())}")
        return info

    def _automatic(self, checkpoint: str | Path) -> VaeInfo | None:
        beside = vae_beside(checkpoint)
        if beside is not None:
            return VaeInfo(str(beside.resolve()), beside.name)
        stem = Path(checkpoint).with_suffix("").name
        with self._lock:
            in_dir = [v for v in self._vaes.values()
                      if Path(v.filename).is_relative_to(self.vae_dir.resolve()) and v.basename.startswith(stem)]
        return in_dir[0] if in_dir else None


def read_vae_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A VAE file's tensors with keys relative to `first_stage_model` (a full checkpoint works too)."""
    sd = read_state_dict(path)
    prefix = "first_stage_model."
    if any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return {k: v for k, v in sd.items() if not k.startswith("loss.")}


def swap_vae(model: torch.nn.Module, state_dict: dict[str, torch.Tensor],
             source: str = "VAE") -> dict[str, torch.Tensor]:
    """Assign `state_dict` to `model.first_stage_model` (cast to its dtype and device); returns the
    tensors it replaced, so `swap_vae(model, returned)` undoes it."""
    vae = model.first_stage_model
    current = vae.state_dict()
    missing = [k for k in current if k not in state_dict]
    wrong = [k for k in current if k in state_dict and tuple(state_dict[k].shape) != tuple(current[k].shape)]
    if missing or wrong:
        detail = ", ".join(missing[:3] + [f"{k} {tuple(state_dict[k].shape)} vs {tuple(current[k].shape)}"
                                          for k in wrong[:3]])
        raise ValueError(f"{source} does not fit this model's VAE: {len(missing)} missing and "
                         f"{len(wrong)} mis-shaped weights ({detail})")
    new = {k: state_dict[k].to(device=t.device, dtype=t.dtype) for k, t in current.items()}
    vae.load_state_dict(new, strict=True, assign=True)
    vae.requires_grad_(False)
    return current
