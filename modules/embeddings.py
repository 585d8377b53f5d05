"""Textual inversion embeddings: files in `embeddings/`, used by writing the file name in a prompt.

Gal et al. 2022, "An Image is Worth One Word": a few learned token vectors [n, C] stand in for a
word. Formats read (A1111's):
- `.pt` / `.bin` with `string_to_param` ({"*": [n, C]}), A1111's and the original repository's
  (whose value is a pickled nn.ParameterDict: allowed explicitly, nothing else is);
- `.safetensors` with `emb_params` [n, C];
- diffusers' concept files: one {token: [C] or [n, C]} tensor.
Loading never runs code: safetensors, or torch.load(weights_only=True).

An embedding whose width C differs from the loaded text encoder's (768 for v1, 1024 for v2), or an
SDXL one (clip_g/clip_l), is listed in `skipped`, not an error. `hash` is the file's sha256 and
`shorthash` its first 12 hex digits, as A1111 writes them in the infotext ("TI hashes").
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch

EXTENSIONS = (".pt", ".bin", ".safetensors")


@dataclass
class Embedding:
    name: str
    vec: torch.Tensor  # [vectors, C], float32 on the CPU
    filename: str = ""
    hash: str = ""
    step: int | None = None  # training step, when the file says

    @property
    def vectors(self) -> int:
        return self.vec.shape[0]

    @property
    def shape(self) -> int:
        return self.vec.shape[-1]

    @property
    def shorthash(self) -> str:
        return self.hash[:12]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_file(path: Path) -> dict:
    if path.suffix.lower() == ".safetensors":

        return safetensors.torch.load_file(str(path), device="cpu")
    # the original textual_inversion repository pickled an nn.ParameterDict; nothing else is allowed
    with torch.serialization.safe_globals([torch.nn.ParameterDict, torch.nn.Parameter]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _vectors_from_data(data) -> torch.Tensor:
    """The [n, C] tensor inside one embedding file, or ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not an embedding file (expected a dict of tensors)")
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = dict(params.items()) if hasattr(params, "items") else params
        if len(params) != 1:
            raise ValueError(f"embedding file has {len(params)} vectors sets in string_to_param; expected 1")
        vec = next(iter(params.values()))
    elif "emb_params" in data:
        vec = data["emb_params"]
    elif "clip_g" in data and "clip_l" in data:
        raise ValueError("SDXL embedding (clip_g/clip_l): not usable with SD v1/v2 models")
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        vec = next(iter(data.values()))  # diffusers concept: {"<token>": tensor}
    else:
        raise ValueError("unrecognised embedding format (no string_to_param or emb_params)")
    if not isinstance(vec, torch.Tensor) or vec.ndim not in (1, 2) or vec.numel() == 0:
        raise ValueError("embedding vectors must be a [C] or [n, C] tensor")
    vec = vec.detach().to(device="cpu", dtype=torch.float32)
    return vec.unsqueeze(0) if vec.ndim == 1 else vec


def load_embedding(path: str | os.PathLike) -> Embedding:
    """One embedding file -> Embedding named after the file stem. Raises ValueError when unusable."""
    path = Path(path)
    try:
        data = _read_file(path)
    except Exception as e:  # a pickle that wants code, a truncated file, ...
        raise ValueError(f"cannot read embedding {path.name} safely: {e}") from None
    vec = _vectors_from_data(data)
    step = data.get("step") if isinstance(data.get("step"), int) else None
    return Embedding(name=path.stem, vec=vec, filename=str(path), hash=file_sha256(path), step=step)


class EmbeddingDatabase:
    """The embeddings in some folders, for a text encoder of a given width.

    `load(width, tokenizer)` (re)reads the folders when a file was added, removed or changed, or the
    width changed; then `word_embeddings` (usable, by name), `skipped` (name -> reason) and
    `find_embedding_at_position` reflect them. The tokenizer turns names into token ids, so an
    embedding is found wherever its name's tokens appear in a prompt.
    """

    def __init__(self, dirs: list[str | os.PathLike] | str | os.PathLike = ()):
        self.dirs = [Path(d) for d in ([dirs] if isinstance(dirs, (str, os.PathLike)) else dirs)]
        self.word_embeddings: dict[str, Embedding] = {}
        self.skipped: dict[str, str] = {}
        self._ids_lookup: dict[int, list[tuple[list[int], Embedding]]] = {}
        self._signature = None

    def _files(self) -> list[Path]:
        found = []
        for d in self.dirs:
            if d.is_dir():
                found += [p for p in d.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()]
        return sorted(found, key=lambda p: str(p).lower())

    def load(self, width: int, tokenizer, force: bool = False) -> "EmbeddingDatabase":
        files = self._files()
        signature = (width, id(tokenizer), tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files))
        if force or signature != self._signature:
            self._reload(files, width, tokenizer)
            self._signature = signature
        return self

    def refresh(self, width: int, tokenizer) -> "EmbeddingDatabase":
        return self.load(width, tokenizer, force=True)

    def _reload(self, files: list[Path], width: int, tokenizer) -> None:
        self.word_embeddings, self.skipped, self._ids_lookup = {}, {}, {}
        for path in files:
            try:
                emb = load_embedding(path)
            except ValueError as e:
                self.skipped[path.stem] = str(e)
                continue
            if emb.shape != width:
                self.skipped[emb.name] = f"width {emb.shape} does not match the model's text encoder ({width})"
                continue
            ids = tokenizer.encode(emb.name)
            if not ids:
                self.skipped[emb.name] = "its name has no tokens, so no prompt can use it"
                continue
            self.word_embeddings.pop(emb.name, None)  # a later file with the same name wins
            self.word_embeddings[emb.name] = emb
        for emb in self.word_embeddings.values():
            ids = tokenizer.encode(emb.name)
            self._ids_lookup.setdefault(ids[0], []).append((ids, emb))
        for entries in self._ids_lookup.values():
            entries.sort(key=lambda e: len(e[0]), reverse=True)  # longest name first

    def find_embedding_at_position(self, tokens: list[int], offset: int) -> tuple[Embedding | None, int]:
        """(embedding, number of prompt tokens its name spans) starting at tokens[offset], or (None, 0)."""
        for ids, emb in self._ids_lookup.get(tokens[offset], ()):
            if tokens[offset:offset + len(ids)] == ids:
                return emb, len(ids)
        return None, 0

    def names(self) -> list[str]:
        return sorted(self.word_embeddings)

    def as_api(self) -> dict:
        """A1111's GET /sdapi/v1/embeddings shape: {"loaded": {...}, "skipped": {...}}."""
        def info(emb: Embedding | None) -> dict:
            if emb is None:
                return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None, "vectors": None}
            return {"step": emb.step, "sd_checkpoint": None, "sd_checkpoint_name": None,
                    "shape": emb.shape, "vectors": emb.vectors}
        return {"loaded": {n: info(e) for n, e in self.word_embeddings.items()},
                "skipped": {n: info(None) for n in self.skipped}}
