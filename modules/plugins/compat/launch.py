"""A1111's `launch` / `modules.launch_utils` API for extensions' install.py: is_installed, run_pip,
run, git_tag, commit_hash, python, index_url. Standard library only (launch.py imports it before
the virtual environment is ready).

run_pip installs into this web UI's Python, as A1111's does, but with the project's locks as pip
constraints: a package an extension wants may be added, a pinned one is never changed (pip then
fails, the extension's install.py reports it, and the web UI keeps the versions it was tested with).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
python = sys.executable
index_url = os.environ.get("INDEX_URL", "")
LOCKS = ("requirements-torch.txt", "requirements.txt")


def is_installed(package: str) -> bool:
    """Whether a distribution (or, failing that, an importable module) of that name is installed."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def run(command, desc: str | None = None, errdesc: str | None = None, custom_env: dict | None = None,
        live: bool = True) -> str:
    """Run a shell command (A1111's launch.run); raises RuntimeError with its output when it fails."""
    if desc:
        print(desc, flush=True)
    args = command if isinstance(command, list) else shlex.split(command)
    proc = subprocess.run(args, capture_output=not live, text=True, env=custom_env or os.environ.copy(),
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        output = "" if live else f"\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        raise RuntimeError(f"{errdesc or 'Error running command'}.\nCommand: {command}\n"
                           f"Error code: {proc.returncode}{output}")
    return "" if live else proc.stdout


def run_pip(command: str, desc: str | None = None, live: bool = True) -> str:
    """`pip <command>` with this Python, constrained by the project's locks (see the module docstring)."""
    constraints = []
    for name in LOCKS:
        if (ROOT / name).is_file():
            constraints += ["--constraint", str(ROOT / name)]
    args = [python, "-m", "pip", *shlex.split(command), "--prefer-binary", *constraints]
    if index_url:
        args += ["--index-url", index_url]
    return run(args, desc=f"Installing {desc}" if desc else None,
               errdesc=f"Couldn't install {desc or command}", live=live)


def git_tag() -> str:
    try:
        return subprocess.check_output(["git", "-C", str(ROOT), "describe", "--tags"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "<none>"


def commit_hash() -> str:
    try:
        return subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "<none>"


def parsed_args():
    """The command-line flags of this process (A1111's launch.args)."""
    from modules import cmd_args
    return cmd_args.make_parser().parse_known_args(sys.argv[1:])[0]
