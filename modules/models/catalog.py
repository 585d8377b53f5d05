"""The checkpoint catalog: which `.ckpt`/`.safetensors` files exist, their titles and hashes.

A1111's naming, which users, infotexts and API clients rely on:
- `name`: path relative to its models folder, with extension (`sub/v1-5-pruned-emaonly.safetensors`);
- `model_name`: the same without extension, `/` replaced by `_` (the API's `model_name`);
- `name_for_extra`: basename without extension (infotext `Model:`);
- `sha256` of the whole file; `shorthash` = its first 10 hex digits (infotext `Model hash:`);
- `title` = `name [shorthash]` (the `sd_model_checkpoint` option and the model dropdown);
- `hash` = the legacy 8-hex "model hash" (sha256 of 64 KiB at offset 1 MiB), for old infotexts.

Hashes are cached in a json file keyed by absolute path with the file's size and mtime, so a rescan
of unchanged files reads nothing but their stat.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from modules.atomic import atomic_write_text, read_json_object
from modules.models.detect import file_family

log = logging.getLogger(__name__)

CHECKPOINT_EXTENSIONS = (".ckpt", ".safetensors")
Hasher = Callable[[Path], str]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def legacy_model_hash(path: Path) -> str:
    """A1111's old short hash: sha256 of 64 KiB at offset 1 MiB, first 8 hex digits."""
    try:
        with open(path, "rb") as f:
            f.seek(0x100000)
            return hashlib.sha256(f.read(0x10000)).hexdigest()[:8]
    except OSError:
        return "NOFILE"


class HashCache:
    """sha256 of files, cached on disk by (path, size, mtime); thread safe; writes are atomic."""

    SECTION = "hashes-sha256"

    def __init__(self, cache_file: Path | str | None, hasher: Hasher = sha256_file):
        self.cache_file = Path(cache_file) if cache_file else None
        self.hasher = hasher
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = self._read()

    def _read_file(self) -> dict:
        """The file's sections; a damaged file is kept as cache.json.corrupt (it costs only a rehash,
        but another program's section in it is not ours to destroy)."""
        if not self.cache_file:
            return {}
        data, warning = read_json_object(self.cache_file)
        if warning:
            log.warning("%s; the hashes are computed again", warning)
        return data

    def _read(self) -> dict[str, dict]:
        entries = self._read_file().get(self.SECTION, {})
        return entries if isinstance(entries, dict) else {}

    def _write(self) -> None:
        """Rewrite our section only: the file may hold other sections (other hash users)."""
        if not self.cache_file:
            return
        data = self._read_file()
        data[self.SECTION] = self._entries
        atomic_write_text(self.cache_file, json.dumps(data, indent=1, sort_keys=True))

    def sha256(self, path: Path | str) -> str:
        path = Path(path).resolve()
        stat = path.stat()
        key = str(path)
        with self._lock:
            entry = self._entries.get(key)
            if entry and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime:
                return entry["sha256"]
        digest = self.hasher(path)  # outside the lock: hashing 2 GB takes seconds
        with self._lock:
            self._entries[key] = {"size": stat.st_size, "mtime": stat.st_mtime, "sha256": digest}
            self._write()
        return digest


@dataclass
class CheckpointInfo:
    filename: str  # absolute path
    name: str  # relative path with extension, "/" separators
    sha256: str
    hash: str  # legacy 8-hex model hash
    ids: list[str] = field(default_factory=list, repr=False)
    family: str | None = None  # what the file is, from its header ("SD3.5 Medium (...)"); None: not told

    @property
    def shorthash(self) -> str:
        return self.sha256[:10]

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]"

    @property
    def model_name(self) -> str:
        return os.path.splitext(self.name.replace("/", "_"))[0]

    @property
    def name_for_extra(self) -> str:
        return os.path.splitext(os.path.basename(self.filename))[0]

    @property
    def config(self) -> str | None:
        """The yaml beside the file (`<name>.yaml`), as the API's sd-models `config` reports it."""
        for ext in (".yaml", ".yml"):
            candidate = os.path.splitext(self.filename)[0] + ext
            if os.path.isfile(candidate):
                return candidate
        return None

    def aliases(self) -> list[str]:
        """Every string A1111 accepts as an exact reference to this checkpoint."""
        return [self.title, self.name, self.model_name, self.name_for_extra, self.shorthash, self.sha256,
                self.hash, f"{self.name} [{self.hash}]", f"{self.name_for_extra} [{self.shorthash}]",
                os.path.splitext(self.name)[0]]


def is_checkpoint_file(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(CHECKPOINT_EXTENSIONS) and ".vae." not in name


def list_checkpoint_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=True):
        found += [Path(dirpath) / f for f in filenames if is_checkpoint_file(Path(f))]
    return found


class CheckpointCatalog:
    """Scan `dirs` (models/Stable-diffusion first, then each `--ckpt-dir`); look checkpoints up by
    the strings A1111 accepts for `sd_model_checkpoint`."""

    def __init__(self, dirs: Iterable[Path | str], hash_cache: HashCache):
        self.dirs = [Path(d) for d in dirs]
        self.hash_cache = hash_cache
        self._lock = threading.Lock()
        self._checkpoints: dict[str, CheckpointInfo] = {}  # title -> info
        self._aliases: dict[str, CheckpointInfo] = {}

    def refresh(self) -> list[CheckpointInfo]:
        found: dict[str, CheckpointInfo] = {}
        for root in self.dirs:
            for path in list_checkpoint_files(root):
                info = self._info(root, path)
                if info.filename not in {i.filename for i in found.values()}:
                    found[info.title] = info
        infos = sorted(found.values(), key=lambda i: i.name.lower())
        aliases: dict[str, CheckpointInfo] = {}
        for info in reversed(infos):  # earlier (sorted) entries win on clashes
            aliases.update({alias: info for alias in info.aliases()})
        with self._lock:
            self._checkpoints = {i.title: i for i in infos}
            self._aliases = aliases
        return infos

    def _info(self, root: Path, path: Path) -> CheckpointInfo:
        name = path.relative_to(root).as_posix()
        return CheckpointInfo(filename=str(path.resolve()), name=name,
                              sha256=self.hash_cache.sha256(path), hash=legacy_model_hash(path),
                              family=file_family(path))

    def list(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._checkpoints.values())

    def titles(self) -> list[str]:
        return [i.title for i in self.list()]

    def get(self, search: str) -> CheckpointInfo | None:
        """A1111's `get_closet_checkpoint_match`: exact alias, then sha256 prefix, then the
        shortest title containing the string (with or without a trailing ` [hash]`)."""
        if not search:
            return None
        with self._lock:
            infos = list(self._checkpoints.values())
            exact = self._aliases.get(search)
        if exact:
            return exact
        if re.fullmatch(r"[0-9a-fA-F]{6,64}", search):
            by_hash = [i for i in infos if i.sha256.startswith(search.lower())]
            if len(by_hash) == 1:
                return by_hash[0]
        without_hash = re.sub(r"\s\[[^]]+]\s*$", "", search)
        for needle in (search, without_hash):
            found = sorted((i for i in infos if needle in i.title), key=lambda i: len(i.title))
            if found:
                return found[0]
        return None

    def require(self, search: str) -> CheckpointInfo:
        info = self.get(search)
        if info is None:
            known = ", ".join(self.titles()[:5]) or "none: put .safetensors files in models/Stable-diffusion"
            raise ValueError(f"no checkpoint matches {search!r}. Known checkpoints: {known}")
        return info
