"""A1111's `modules.hashes` path, for extensions: sha256 of model files, cached in the data dir's
cache.json like the checkpoints' (modules.models.catalog.HashCache), and the "addnet" hash of a
safetensors file (of its tensors only, as LoRA infotexts use). Nothing in the project imports it."""
from __future__ import annotations

from modules.models.catalog import HashCache, sha256_file
from modules.script_callbacks import current_scope


def calculate_sha256(filename: str) -> str:
    return sha256_file(filename)


def _cache() -> HashCache:
    models = current_scope().ctx.models
    return models.catalog.hash_cache if models is not None else HashCache(current_scope().ctx.paths.cache_file)


def sha256(filename: str, title: str = "", use_addnet_hash: bool = False) -> str:
    if use_addnet_hash:
        from modules.lora.network import lora_file_hash
        return lora_file_hash(filename)
    return _cache().sha256(filename)


def sha256_from_cache(filename: str, title: str = "", use_addnet_hash: bool = False) -> str | None:
    """The hash when it is known without reading the file (A1111 returns None otherwise); here the
    hash is computed when missing, as the cache stores it by path, size and mtime."""
    return sha256(filename, title, use_addnet_hash)
