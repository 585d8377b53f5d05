"""Extension folders: metadata.ini, discovery and load order, importing scripts/*.py.

metadata.ini (all optional):

    [Extension]
    Name = my-extension          ; the name Requires/Before/After refer to (default: folder name)
    Requires = other-extension   ; loaded after it; not loaded at all when it is missing/disabled
    Before = x, y                ; soft ordering hints (ignored when x is not installed)
    After = z
"""
from __future__ import annotations

import configparser
import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from modules.plugins import git
from modules.plugins import install as extensions_install
from modules.plugins.compat import ldm_paths
from modules.script_callbacks import extension_scope
from modules.scripts import script_classes_in

log = logging.getLogger("sdwebui.extensions")


@dataclass
class ExtensionMetadata:
    name: str
    requires: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


def _names(text: str | None) -> list[str]:
    return [x.strip().lower() for x in (text or "").replace(";", ",").split(",") if x.strip()]


def read_metadata(path: Path) -> tuple[ExtensionMetadata, str | None]:
    """metadata.ini -> (metadata, problem message or None)."""
    meta = ExtensionMetadata(path.name.lower())
    ini = path / "metadata.ini"
    if not ini.is_file():
        return meta, None
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        return meta, f"metadata.ini could not be read ({type(e).__name__}: {e}); using defaults"
    section = parser["Extension"] if parser.has_section("Extension") else {}
    meta.name = (section.get("Name") or path.name).strip().lower()
    meta.requires, meta.before, meta.after = (_names(section.get(k)) for k in ("Requires", "Before", "After"))
    return meta, None


@dataclass
class Extension:
    name: str
    path: Path
    is_builtin: bool
    enabled: bool = True
    metadata: ExtensionMetadata | None = None
    status: str = "not loaded"  # loaded | disabled | not loaded: ... | has errors
    load_seconds: float = 0.0
    script_files: list[str] = field(default_factory=list)
    install: extensions_install.InstallResult | None = None
    remote: str = ""
    branch: str = ""
    commit_hash: str = ""
    commit_date: int = 0
    version: str = ""

    @property
    def canonical_name(self) -> str:
        return self.metadata.name if self.metadata else self.name.lower()

    def read_git_info(self) -> None:
        gi = git.info(self.path)
        self.remote, self.branch, self.commit_hash, self.commit_date = (gi.remote, gi.branch, gi.commit_hash,
                                                                         gi.commit_date)
        self.version = gi.commit_hash[:8]


def discover_dirs(builtin_dir: Path, user_dir: Path, disable: str = "none") -> list[tuple[Path, bool]]:
    """(folder, is_builtin) in default load order: builtin first, then the user's, each by name.
    disable: "none", "extra" (only builtin) or "all"."""
    roots = []
    if disable != "all":
        roots.append((Path(builtin_dir), True))
        if disable != "extra":
            roots.append((Path(user_dir), False))
    out = []
    for root, builtin in roots:
        if root.is_dir():
            out += [(p, builtin) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return out


def order_extensions(exts: list[Extension]) -> tuple[list[Extension], list[tuple[Extension, str]]]:
    """Order by metadata (Requires and After: after those; Before: before those), keeping the given
    order otherwise. Returns (ordered, [(extension not loadable, why)])."""
    by_name = {e.canonical_name: e for e in exts}
    dropped: list[tuple[Extension, str]] = []
    changed = True
    while changed:  # an extension whose requirement was dropped is dropped too
        changed = False
        for e in list(by_name.values()):
            missing = [r for r in (e.metadata.requires if e.metadata else []) if r not in by_name]
            if missing:
                dropped.append((e, f"requires {', '.join(missing)}, which is not installed or is disabled"))
                del by_name[e.canonical_name]
                changed = True
    alive = [e for e in exts if e.canonical_name in by_name]
    after: dict[str, set[str]] = {e.canonical_name: set() for e in alive}
    for e in alive:
        meta = e.metadata or ExtensionMetadata(e.canonical_name)
        after[e.canonical_name] |= {n for n in meta.requires + meta.after if n in after}
        for n in meta.before:
            if n in after:
                after[n].add(e.canonical_name)
    ordered: list[Extension] = []
    placed: set[str] = set()
    pending = list(alive)
    while pending:
        ready = next((e for e in pending if after[e.canonical_name] <= placed), None)
        if ready is None:  # a cycle: keep the default order for the rest
            names = ", ".join(e.name for e in pending)
            log.warning("extensions %s: metadata.ini Before/After/Requires form a cycle; default order used", names)
            ordered += pending
            break
        ordered.append(ready)
        placed.add(ready.canonical_name)
        pending.remove(ready)
    return ordered, dropped


def import_script(path: Path, scope) -> list:
    """Import one scripts/*.py under the extension's scope (script_callbacks.ExtensionScope), with the
    extension folder on sys.path during the import (A1111 does this; extensions import their own
    helper modules that way), with the original LDM module paths available (compat.ldm_paths), inside
    the front end's ui_context (Gradio 3 compatibility). The module
    is named after its file, as A1111 names it ("xyz_grid.py": extensions find scripts by
    `script_class.__module__`), and kept in sys.modules under a unique name too. Returns the
    scripts.ScriptClass records of its Script subclasses."""
    module_name = f"sdwebui_extension_{_identifier(scope.extension)}_{_identifier(path.stem)}"
    spec = importlib.util.spec_from_file_location(path.name, path)
    module = importlib.util.module_from_spec(spec)
    saved_path = list(sys.path)
    sys.path.insert(0, str(path.parent.parent))
    # dataclasses, pickle and tracebacks look modules up by name
    sys.modules[module_name] = module
    a1111_name_is_ours = sys.modules.setdefault(path.name, module) is module
    try:
        with ldm_paths.installed(), scope.registry.ui_context(scope), extension_scope(scope):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        if a1111_name_is_ours:
            sys.modules.pop(path.name, None)
        raise
    finally:
        sys.path[:] = saved_path
    return script_classes_in(module, path, scope)


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)

