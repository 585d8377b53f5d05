"""Atomic file writes: a temp file in the same folder, fsync, then os.replace; and reading back the
JSON files the app writes, keeping a damaged one as a backup instead of overwriting it.

A crash or a full disk mid-write leaves the old file intact, never a half-written one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def backup_corrupt(path: str | os.PathLike) -> Path:
    """Move a file that could not be read aside (never delete what the user made); returns the backup."""
    path = Path(path)
    n = 0
    while True:
        backup = path.with_name(f"{path.name}.corrupt{'' if n == 0 else f'.{n}'}")
        if not backup.exists():
            break
        n += 1
    os.replace(path, backup)
    return backup


def read_json_object(path: str | os.PathLike) -> tuple[dict, str | None]:
    """A JSON object file the app writes (config.json, cache.json...) -> (its data, warning).

    Missing: ({}, None). Unreadable as a JSON object: the file is moved aside (backup_corrupt) so the
    next write cannot destroy what the user had, and the warning says where it went."""
    path = Path(path)
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("the top level is not an object")
    except (ValueError, UnicodeDecodeError) as e:
        backup = backup_corrupt(path)
        return {}, f"{path.name} could not be read ({e}); it was kept as {backup.name}"
    return data, None
