"""Running an extension's install.py: once, in a subprocess with a timeout, and again only when the
extension changed (its git HEAD, or a hash of its files, differs from the one recorded in the data
dir's `extensions-installed.json`).

install.py runs with the extension folder as working directory and the project root on PYTHONPATH
(so `import launch` works as in A1111); its output is logged. A failure or a timeout is reported
(the extension still loads: A1111 does the same) and install.py is tried again at the next start.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from modules.atomic import atomic_write_text, read_json_object
from modules.paths import ROOT

log = logging.getLogger("sdwebui.extensions")

STATE_FILE = "extensions-installed.json"
DEFAULT_TIMEOUT = 600.0
SKIP_DIRS = {".git", "__pycache__", ".venv", "venv", "node_modules"}


@dataclass
class InstallResult:
    ran: bool            # False: skipped (nothing changed, or no install.py)
    ok: bool
    message: str = ""
    output: str = ""


def fingerprint(path: Path) -> str:
    """git HEAD (plus a dirty flag from the file hash) when the extension is a git checkout, else a
    sha256 of every file's relative name, size and content."""
    h = hashlib.sha256()
    for file in sorted(_files(path)):
        rel = file.relative_to(path).as_posix()
        h.update(rel.encode() + b"\0")
        try:
            h.update(hashlib.sha256(file.read_bytes()).digest())
        except OSError:
            h.update(b"unreadable")
    head = _git_head(path)
    return f"git:{head}:{h.hexdigest()[:16]}" if head else f"files:{h.hexdigest()}"


def _files(path: Path):
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if not name.endswith((".pyc", ".pyo")):
                yield Path(root) / name


def _git_head(path: Path) -> str | None:
    head = path / ".git" / "HEAD"
    if not head.is_file():
        return None
    text = head.read_text(errors="replace").strip()
    if text.startswith("ref: "):
        ref = path / ".git" / text[5:]
        if ref.is_file():
            return ref.read_text().strip()
        packed = path / ".git" / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + text[5:]):
                    return line.split()[0]
        return None
    return text


class InstallState:
    """name -> fingerprint of the last successful install.py run, in the data dir."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / STATE_FILE
        raw, warning = read_json_object(self.path)
        if warning:
            log.warning("%s: every install.py runs again", warning)
        self.data: dict[str, str] = {str(k): str(v) for k, v in raw.items()}

    def get(self, name: str) -> str | None:
        return self.data.get(name)

    def set(self, name: str, value: str) -> None:
        self.data[name] = value
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


def run_install(name: str, path: Path, state: InstallState, timeout: float = DEFAULT_TIMEOUT,
                force: bool = False) -> InstallResult:
    script = path / "install.py"
    if not script.is_file():
        return InstallResult(ran=False, ok=True)
    fp = fingerprint(path)
    if not force and state.get(name) == fp:
        return InstallResult(ran=False, ok=True, message="up to date")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log.info("extension %s: running install.py", name)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)  # its own process group: a timeout kills its children too
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            output, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            output = ""
        return InstallResult(ran=True, ok=False, message=f"install.py did not finish within {timeout:g} s "
                             "and was stopped; it runs again at the next start", output=(output or "")[-4000:])
    output = output or ""
    if output.strip():
        log.info("extension %s: install.py output:\n%s", name, output.strip()[-4000:])
    if proc.returncode != 0:
        return InstallResult(ran=True, ok=False, message=f"install.py failed with exit code {proc.returncode}; "
                             "it runs again at the next start", output=output[-4000:])
    state.set(name, fingerprint(path))  # after the run: install.py may write files
    return InstallResult(ran=True, ok=True, message="install.py ran", output=output[-4000:])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
