"""A1111's `modules.extensions` path, for extensions: the extensions of the running app.

A thin facade over the app's ExtensionManager (modules.plugins.manager), looked up through the
extension scope that is current (modules.script_callbacks), like modules.shared: no globals here.
Names: active(), extensions, extensions_dir, extensions_builtin_dir, Extension (name, path, enabled,
is_builtin, canonical_name, remote, branch, commit_hash, version, metadata), list_extensions().
"""
from __future__ import annotations

from typing import Any

from modules.plugins.discovery import Extension  # noqa: F401  (A1111's class name)
from modules.script_callbacks import current_scope


def _manager():
    return current_scope().ctx.extensions


def active() -> list:
    """The enabled extensions, in load order (A1111's extensions.active())."""
    manager = _manager()
    return list(manager.loaded) if manager is not None else []


def list_extensions() -> None:
    """A1111 rescans the folders here; this web UI finds extensions once, at start-up."""


def __getattr__(name: str) -> Any:
    if name == "extensions":  # every extension found, enabled or not
        manager = _manager()
        return list(manager.extensions) if manager is not None else []
    if name in ("extensions_dir", "extensions_builtin_dir"):
        paths = current_scope().ctx.paths
        return str(paths.extensions_dir if name == "extensions_dir" else paths.extensions_builtin_dir)
    raise AttributeError(f"modules.extensions.{name} is not available in this web UI")
