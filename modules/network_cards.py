"""The extra networks browser's data (A1111's cards): one card per textual inversion embedding,
checkpoint and LoRA, with its preview image, description and the text a click inserts.

Kept apart from A1111's module names (modules.extra_networks / ui_extra_networks are facades of the
extension surface): this is the engine part, plain data, no gradio.

    cards = list_cards(ctx, "lora")                       # kinds: KINDS
    cards = filter_and_sort(cards, search="red", sort="Name", descending=False)

Preview: `<name>.png` or `<name>.preview.png` (also .jpg/.jpeg/.webp) beside the file. Description:
`<name>.json`'s "description" (A1111's user metadata, which may also give "activation text" and
"preferred weight"), else `<name>.txt`/`<name>.description.txt`, else a safetensors header's
`modelspec.description` / `ss_training_comment`. Insert text: LoRA `<lora:name:weight>` plus its
activation text, an embedding its name; a checkpoint card switches the model (insert is None).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

KINDS = {"textual inversion": "Textual Inversion", "checkpoints": "Checkpoints", "lora": "Lora"}
SORTS = ("Default", "Name", "Date created", "Date modified", "Path")
PREVIEW_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass
class Card:
    kind: str
    name: str
    filename: str
    preview: str | None      # path of the preview image
    description: str
    insert: str | None       # the prompt text a click adds (None: a checkpoint card, which switches models)
    title: str               # checkpoints: the catalog title to switch to; else the name
    mtime: float
    ctime: float
    size: int


def preview_for(path: Path) -> str | None:
    stem = path.with_suffix("")
    for base in (str(stem), f"{stem}.preview"):
        for ext in PREVIEW_EXTENSIONS:
            if os.path.isfile(base + ext):
                return base + ext
    return None


def user_metadata(path: Path) -> dict:
    """A1111's `<name>.json` beside the file ({} when absent or not an object)."""
    try:
        data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _header_description(path: Path) -> str:
    if path.suffix.lower() != ".safetensors":
        return ""
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - an unreadable file simply has no description
        return ""
    return meta.get("modelspec.description") or meta.get("ss_training_comment") or ""


def description_for(path: Path, meta: dict) -> str:
    if isinstance(meta.get("description"), str) and meta["description"].strip():
        return meta["description"].strip()
    for candidate in (path.with_suffix(".txt"), Path(f"{path.with_suffix('')}.description.txt")):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace").strip()
    return _header_description(path)


def _card(kind: str, name: str, path: Path, insert: str | None, title: str | None = None,
          meta: dict | None = None) -> Card:
    meta = user_metadata(path) if meta is None else meta
    st = path.stat()
    return Card(kind, name, str(path), preview_for(path), description_for(path, meta), insert, title or name,
                st.st_mtime, getattr(st, "st_birthtime", st.st_ctime), st.st_size)


def _lora_insert(name: str, meta: dict, default_weight: float) -> str:
    weight = meta.get("preferred weight") or default_weight
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        weight = default_weight
    text = f"<lora:{name}:{weight:g}>"
    activation = meta.get("activation text")
    return f"{text} {activation.strip()}" if isinstance(activation, str) and activation.strip() else text


def list_cards(ctx, kind: str, default_weight: float = 1.0) -> list[Card]:
    """The cards of one kind, in the folders' order."""
    if kind not in KINDS:
        raise ValueError(f"unknown extra network kind {kind!r}: one of {', '.join(KINDS)}")
    cards: list[Card] = []
    if kind == "checkpoints":
        for info in ctx.models.catalog.list() if ctx.models is not None else []:
            path = Path(info.filename)
            cards.append(_card(kind, info.name_for_extra, path, None, info.title))
    elif kind == "lora":
        db = ctx.services.lora
        if db is not None:
            db.refresh()
            for name, path in sorted(db.available.items()):
                meta = user_metadata(path)
                cards.append(_card(kind, name, path, _lora_insert(name, meta, default_weight), meta=meta))
    else:
        folder = ctx.paths.embeddings_dir
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".pt", ".bin", ".safetensors")
                       and not p.name.endswith(".preview.png")) if folder.is_dir() else []
        for path in files:
            cards.append(_card(kind, path.stem, path, path.stem))
    return cards


def filter_and_sort(cards: list[Card], search: str = "", sort: str = "Default", descending: bool = False
                    ) -> list[Card]:
    """A1111's search (every word in the name, path or description) and sort orders."""
    words = (search or "").lower().split()
    if words:
        cards = [c for c in cards if all(w in f"{c.name} {c.filename} {c.description}".lower() for w in words)]
    keys = {"Name": lambda c: c.name.lower(), "Date created": lambda c: c.ctime, "Date modified": lambda c: c.mtime,
            "Path": lambda c: c.filename.lower()}
    if sort in keys:
        cards = sorted(cards, key=keys[sort])
    elif sort != "Default":
        raise ValueError(f"unknown sort {sort!r}: one of {', '.join(SORTS)}")
    return list(reversed(cards)) if descending else list(cards)
