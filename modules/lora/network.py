"""LoRA files: loading (safetensors, or torch.load(weights_only=True)), hashing, the Lora folder.

Hu et al. 2021, "LoRA": a layer's weight gains `up @ down * alpha / rank`. kohya's files hold, per
layer prefix, `<prefix>.lora_down.weight` [rank, in(, kh, kw)], `<prefix>.lora_up.weight`
[out, rank(, 1, 1)] and `<prefix>.alpha` (a scalar; missing means alpha = rank).

The short hash in the infotext ("Lora hashes") is A1111's: for .safetensors the sha256 of the file
after its JSON header (kohya's "addnet" hash, unchanged by metadata edits), else of the whole file;
its first 12 hex digits.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch

EXTENSIONS = (".safetensors", ".pt", ".ckpt")


@dataclass
class LoraLayer:
    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank if self.alpha is not None else 1.0

    def delta(self, shape: torch.Size, device=None) -> torch.Tensor:
        """up @ down * scale in float32, shaped like the patched weight."""
        up, down = (t.to(device=device, dtype=torch.float32).flatten(1) for t in (self.up, self.down))
        if up.shape[1] != down.shape[0]:
            raise ValueError(f"lora_up has rank {up.shape[1]} but lora_down has rank {down.shape[0]}")
        delta = (up @ down) * self.scale
        if delta.numel() != shape.numel():
            raise ValueError(f"makes a {tuple(delta.shape)} change for a {tuple(shape)} weight")
        return delta.reshape(shape)


@dataclass
class LoraNetwork:
    name: str
    filename: str
    layers: dict[str, LoraLayer]
    unsupported: list[str] = field(default_factory=list)  # keys of other kinds (LoHa, DoRA, ...)
    hash: str = ""

    @property
    def shorthash(self) -> str:
        return self.hash[:12]


def lora_file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if str(path).lower().endswith(".safetensors"):
            header_len = struct.unpack("<Q", f.read(8))[0]
            f.seek(8 + header_len)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":

        return safetensors.torch.load_file(str(path), device="cpu")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError("not a dict of tensors")
    return data


def load_lora(path: str | os.PathLike, name: str | None = None) -> LoraNetwork:
    """Read one kohya-format file. Raises ValueError (naming the file) when it is unusable."""
    path = Path(path)
    try:
        tensors = _read(path)
    except Exception as e:
        raise ValueError(f"cannot read LoRA {path.name} safely: {e}") from None
    parts: dict[str, dict[str, torch.Tensor]] = {}
    unsupported = []
    for key, value in tensors.items():
        prefix, _, suffix = key.partition(".")
        if suffix in ("lora_down.weight", "lora_up.weight", "alpha") and isinstance(value, torch.Tensor):
            parts.setdefault(prefix, {})[suffix] = value
        else:
            unsupported.append(key)
    layers = {}
    for prefix, p in parts.items():
        if "lora_down.weight" in p and "lora_up.weight" in p:
            alpha = float(p["alpha"]) if "alpha" in p else None
            layers[prefix] = LoraLayer(p["lora_down.weight"], p["lora_up.weight"], alpha)
        else:
            unsupported += [f"{prefix}.{s}" for s in p]
    if not layers:
        raise ValueError(f"{path.name} has no kohya LoRA layers (lora_down/lora_up)")
    return LoraNetwork(name or path.stem, str(path), layers, unsupported, lora_file_hash(path))


class LoraDatabase:
    """LoRA files in some folders (recursively), by file stem; loaded files are cached."""

    def __init__(self, dirs: list[str | os.PathLike] | str | os.PathLike = (), cache_size: int = 4):
        self.dirs = [Path(d) for d in ([dirs] if isinstance(dirs, (str, os.PathLike)) else dirs)]
        self.cache_size = cache_size
        self.available: dict[str, Path] = {}
        self._cache: dict[str, tuple[tuple, LoraNetwork]] = {}
        self.refresh()

    def refresh(self) -> None:
        found = {}
        for d in self.dirs:
            if d.is_dir():
                for p in sorted(d.rglob("*"), key=lambda p: str(p).lower()):
                    if p.suffix.lower() in EXTENSIONS and p.is_file():
                        found.setdefault(p.stem, p)
        self.available = found

    def get(self, name: str) -> LoraNetwork | None:
        """The network named `name`, or None when there is no such file."""
        if name not in self.available:
            self.refresh()
        path = self.available.get(name)
        if path is None:
            return None
        stat = path.stat()
        signature = (str(path), stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(name)
        if cached is None or cached[0] != signature:
            cached = (signature, load_lora(path, name))
            self._cache[name] = cached
            while len(self._cache) > self.cache_size:
                self._cache.pop(next(iter(self._cache)))
        return cached[1]

    def as_api(self) -> list[dict]:
        """GET /sdapi/v1/loras: [{name, alias, path, metadata}]."""
        return [{"name": n, "alias": n, "path": str(p), "metadata": {}} for n, p in sorted(self.available.items())]
