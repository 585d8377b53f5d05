"""Atomic file writes: a temp file in the same folder, fsync, then os.replace.

A crash or a full disk mid-write leaves the old file intact, never a half-written one.
"""
from __future__ import annotations

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
