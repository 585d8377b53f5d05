"""git for extensions: what a checkout is (remote, branch, commit), cloning from a URL into
extensions/, and checking for updates (git fetch). Plain `git` subprocesses with timeouts.

Safety: the target folder name must be a single plain name inside extensions/ (no "..", no
separators, no leading dot); the URL is passed after `--` so it can never be read as an option,
and git's own protocol policy (ext:: is never allowed) stays in force.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("sdwebui.extensions")

GIT_TIMEOUT = 120.0


class GitError(ValueError):
    """A git command failed; the message says which and why."""


@dataclass
class GitInfo:
    remote: str = ""
    branch: str = ""
    commit_hash: str = ""
    commit_date: int = 0


def git(args: list[str], cwd: Path | None = None, timeout: float = GIT_TIMEOUT) -> str:
    if shutil.which("git") is None:
        raise GitError("git is not installed: install git to install or update extensions")
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")  # never wait for a password prompt
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc.stdout.strip()


def info(path: Path) -> GitInfo:
    """Remote URL, branch, HEAD and its date of a checkout; empty fields when it is not one."""
    if not (path / ".git").exists() or shutil.which("git") is None:
        return GitInfo()
    out = GitInfo()
    try:
        head = git(["log", "-1", "--format=%H %ct"], cwd=path, timeout=10).split()
        out.commit_hash, out.commit_date = head[0], int(head[1])
        out.branch = git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=path, timeout=10)
        out.remote = git(["config", "--get", "remote.origin.url"], cwd=path, timeout=10)
    except (GitError, IndexError, ValueError):
        pass  # a repository without commits or remote: what we have is shown
    return out


def name_from_url(url: str) -> str:
    """'https://github.com/a/sd-webui-foo.git' -> 'sd-webui-foo'."""
    tail = re.split(r"[/\\:]", url.rstrip("/\\"))[-1]
    return tail[:-4] if tail.endswith(".git") else tail


def safe_target(extensions_dir: Path, name: str) -> Path:
    """extensions_dir/name, refusing names that would escape extensions/ or hide the folder."""
    name = (name or "").strip()
    if (not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name
            or "\0" in name or ":" in name):
        raise ValueError(f"extension folder name {name!r} is not allowed: use a plain folder name "
                         "(letters, digits, - and _), without path separators or a leading dot")
    root = extensions_dir.resolve()
    target = (root / name).resolve()
    if target.parent != root:
        raise ValueError(f"extension folder name {name!r} leads outside {root}")
    return target


def clone(url: str, target: Path, branch: str | None = None, timeout: float = GIT_TIMEOUT) -> None:
    """Clone into a hidden temporary folder beside target, then rename: no half-cloned extension."""
    url = (url or "").strip()
    if not url:
        raise ValueError("no URL given: paste the git URL of the extension")
    if url.startswith("-"):
        raise ValueError(f"{url!r} is not a git URL")
    if target.exists():
        raise ValueError(f"an extension is already installed in {target}: remove it first or choose another name")
    tmp = target.parent / f".tmp-{target.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    args = ["clone", "--quiet"] + (["--branch", branch] if branch else []) + ["--", url, str(tmp)]
    try:
        git(args, timeout=timeout)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_status(path: Path, timeout: float = GIT_TIMEOUT) -> str:
    """git fetch, then 'behind' (an update is available), 'latest', or 'unknown' (no upstream)."""
    git(["fetch", "--quiet"], cwd=path, timeout=timeout)
    try:
        upstream = git(["rev-parse", "@{u}"], cwd=path, timeout=10)
    except GitError:
        return "unknown"
    head = git(["rev-parse", "HEAD"], cwd=path, timeout=10)
    if upstream == head:
        return "latest"
    behind = git(["rev-list", "--count", f"HEAD..{upstream}"], cwd=path, timeout=10)
    return "behind" if int(behind or 0) > 0 else "latest"


def fast_forward(path: Path, timeout: float = GIT_TIMEOUT) -> None:
    """Apply a fetched update (fast-forward only: local changes are never overwritten)."""
    git(["merge", "--ff-only", "@{u}"], cwd=path, timeout=timeout)
