"""Reading checkpoint files into a flat `{key: tensor}` dict, safely and without copies.

- `.safetensors`: memory-mapped by the safetensors library; tensors are views of the mapped file,
  so nothing is read until used and nothing is copied.
- `.ckpt`/`.pt`/`.pth`/`.bin` (pickles): only through `torch.load(weights_only=True)`, memory-mapped
  when the file is a zip archive (every torch.save since 1.6). A pickle that names anything besides
  tensors and plain containers is refused: loading a checkpoint never runs code from it. Two harmless
  things real SD checkpoints hold are allowed: numpy scalars (`global_step`) and the class object
  `pytorch_lightning...ModelCheckpoint` used as a dict key under `callbacks` (replaced by a stand-in
  class; pytorch_lightning is never imported).
"""
from __future__ import annotations

import ctypes
import mmap
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointRefused(ValueError):
    """The file would run code when unpickled."""


class _ModelCheckpointStandIn:
    """Stands for pytorch_lightning's ModelCheckpoint class, which old .ckpt files use as a dict key."""


_ModelCheckpointStandIn.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
_ModelCheckpointStandIn.__qualname__ = _ModelCheckpointStandIn.__name__ = "ModelCheckpoint"


def _allowed_globals() -> list:
    numpy_dtypes = [type(np.dtype(t)) for t in ("int32", "int64", "float32", "float64", "bool")]
    return [np.core.multiarray.scalar, np.dtype, *numpy_dtypes, _ModelCheckpointStandIn]


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"cannot read {path.name}: the file is truncated or not a valid .safetensors file "
                         f"({e}). Download it again.") from e


def read_pickle(path: Path) -> dict:
    is_zip = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            culprit = _culprit(str(e))
            raise CheckpointRefused(
                f"refused to load {path.name}: it is a pickle that would run code or build objects "
                f"other than tensors{culprit}. Loading it could execute anything. Use a .safetensors "
                "version of this model, or convert it only if you trust its source.") from e
        raise ValueError(f"cannot read {path.name}: the file is truncated or not a PyTorch checkpoint "
                         f"({e}). Download it again.") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {path.name}: the file is truncated or not a PyTorch checkpoint "
                         f"({(str(e).split('. ')[0] if str(e) else type(e).__name__)[:200]}). Download it again.") from e


def _culprit(message: str) -> str:
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return f" ({line.strip()[:200]})"
    return ""


def unwrap(obj) -> dict[str, torch.Tensor]:
    """Flatten the containers checkpoints come in: a `state_dict` wrapper, non-tensor extras
    (`global_step`, `callbacks`), and the EMA copy `model_ema.*` that loaders never use."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"not a checkpoint: the file holds a {type(obj).__name__}, not a dict of tensors")
    return {k: v for k, v in obj.items()
            if isinstance(k, str) and isinstance(v, torch.Tensor) and not k.startswith("model_ema.")}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file as a flat dict (mmap-backed where possible)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return unwrap(read_safetensors(path))
    if suffix in PICKLE_EXTENSIONS:
        return unwrap(read_pickle(path))
    raise ValueError(f"unknown checkpoint format {suffix!r} for {path.name}: use .safetensors or .ckpt")


_MADV_DONTNEED = 4  # Linux
_MADV_POPULATE_READ = 22  # Linux 5.14+; older kernels return EINVAL and pages fault in on first use
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class MappedFile:
    """Where a checkpoint file is memory-mapped in this process (from /proc/self/maps).

    `release(tensor)` drops a tensor's pages from this process's RSS once it was copied (cast or moved
    to the GPU), so a load never holds the whole file *and* the converted model. It only acts on
    whole pages inside a private mapping of this very file, of tensors nobody writes to (the copied
    sources): such pages are read back from the file if touched again, so it changes memory use,
    never values. Anything else is left alone.
    """

    def __init__(self, path: Path):
        self.ranges: list[tuple[int, int]] = []
        if _libc is None:
            return
        target = str(Path(path).resolve())
        try:
            lines = Path("/proc/self/maps").read_text().splitlines()
        except OSError:
            return
        for line in lines:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5] == target and parts[1].endswith("p"):  # private (copy-on-write)
                start, end = (int(x, 16) for x in parts[0].split("-"))
                self.ranges.append((start, end))

    def populate(self, tensor: torch.Tensor) -> None:
        """Read a tensor the model keeps (a view of the file) in now, in one syscall: the model is
        then ready to run, about 3x faster than faulting its pages in one by one later."""
        self._advise(tensor, _MADV_POPULATE_READ, whole_pages_only=False)

    def release(self, tensor: torch.Tensor) -> None:
        self._advise(tensor, _MADV_DONTNEED, whole_pages_only=True)

    def _advise(self, tensor: torch.Tensor, advice: int, whole_pages_only: bool) -> None:
        if not self.ranges or tensor.device.type != "cpu" or tensor.numel() == 0:
            return
        page = mmap.PAGESIZE
        begin = tensor.data_ptr()
        finish = begin + tensor.numel() * tensor.element_size()
        if not any(lo <= begin and finish <= hi for lo, hi in self.ranges):
            return
        if whole_pages_only:  # neighbours may still be in use
            start, end = -(-begin // page) * page, finish // page * page
        else:
            start, end = begin // page * page, -(-finish // page) * page
        if end > start:
            _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), advice)
