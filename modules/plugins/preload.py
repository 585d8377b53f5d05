"""Extensions' preload.py: `preload(parser)` adds command-line flags before the flags are parsed.

Runs before the application context exists, so it only needs the folders, found from the argv.
A broken preload.py is logged with the extension's name and skipped: it never stops the start.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from modules.paths import ROOT
from modules.plugins.discovery import discover_dirs

log = logging.getLogger("sdwebui.extensions")


def extension_dirs(data_dir: Path, disable: str = "none") -> list[Path]:
    """Extension folders in load order: builtin first, then the user's, each sorted by name."""
    return [p for p, _ in discover_dirs(ROOT / "extensions-builtin", Path(data_dir) / "extensions", disable)]


def add_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Call every extension's preload(parser); returns the names whose preload failed."""
    early, _ = parser.parse_known_args(argv)
    disable = "all" if early.disable_all_extensions else "extra" if early.disable_extra_extensions else "none"
    failed = []
    for ext in extension_dirs(early.data_dir, disable):
        path = ext / "preload.py"
        if not path.is_file():
            continue
        try:
            spec = importlib.util.spec_from_file_location(f"preload_{ext.name}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if hasattr(module, "preload"):
                module.preload(parser)
        except Exception as e:  # an extension must never stop the start
            log.error("extension %s: preload.py failed: %s: %s", ext.name, type(e).__name__, e)
            failed.append(ext.name)
    return failed
