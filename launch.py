#!/usr/bin/env python3
"""Set-up and start, in one place (A1111 splits this over webui.sh and launch.py).

1. Outside a virtual environment: create ./venv and re-execute this script with its Python.
2. Install the pinned requirements that are missing (checked against installed metadata, no pip
   resolution, so a second start takes no time). TORCH_COMMAND overrides how torch is installed.
   With --workers / --ray-address also Ray's (requirements-ray.txt).
3. `--test`: also install the test requirements (and Ray's), then lint (ruff) and run every test;
   exit non-zero if either fails.
4. Otherwise start the server (web UI and/or API).

Only the standard library is used before the venv is ready.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / "venv"
sys.path.insert(0, str(ROOT))

# the venv may not exist yet: these modules use the standard library only
from modules import cmd_args, process_env  # noqa: E402
from modules import requirements as reqs  # noqa: E402

# A1111's launch API, for extensions' install.py (`import launch; launch.run_pip(...)`)
from modules.plugins.compat.launch import (  # noqa: E402, F401
    commit_hash,
    git_tag,
    index_url,
    is_installed,
    python,
    run,
    run_pip,
)


def in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix


def reexec_in_venv(argv: list[str]) -> None:
    venv_python = VENV / "bin" / "python"
    if not venv_python.exists():
        print(f"Creating a virtual environment in {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    os.execv(str(venv_python), [str(venv_python), str(ROOT / "launch.py"), *argv])


def pip_install(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--only-binary=:all:", "--no-deps", *args]
    print("$", " ".join(shlex.quote(a) for a in cmd), flush=True)
    subprocess.run(cmd, check=True)  # pip's own progress bars show on the terminal


def install(test: bool, ray: bool = False) -> None:
    """The locks that are missing; Ray's (requirements-ray.txt) only for --workers / --ray-address
    and the tests, so the single-machine default installs and imports no Ray."""
    files = [ROOT / "requirements.txt"] + ([ROOT / "requirements-test.txt"] if test else [])
    files += [ROOT / "requirements-ray.txt"] if test or ray else []
    torch_command = os.environ.get("TORCH_COMMAND")
    torch_file = ROOT / "requirements-torch.txt"
    if torch_command:
        if reqs.missing([reqs.Pin("torch", None)]):
            print(f"Installing torch with TORCH_COMMAND: {torch_command}", flush=True)
            subprocess.run(torch_command, shell=True, check=True)
    else:
        files.insert(0, torch_file)
    missing = [pin for f in files for pin in reqs.missing(reqs.read_pins(f))]
    if not missing:
        return
    print(f"Installing {len(missing)} missing or outdated packages: "
          f"{', '.join(p.name for p in missing[:8])}{' ...' if len(missing) > 8 else ''}", flush=True)
    # --no-deps: the files are a complete lock of what was tested; see README "Requirements".
    pip_install([str(p) for p in missing])


def run_tests(extra: list[str]) -> int:
    """ruff (the lint rules in pyproject.toml) over the whole tree, then pytest; both must pass."""
    for cmd in ([sys.executable, "-m", "ruff", "check", "."], [sys.executable, "-m", "pytest", *extra]):
        print("$", " ".join(cmd), flush=True)
        code = subprocess.run(cmd, cwd=ROOT).returncode
        if code != 0:
            return 1 if code == 5 else code  # pytest's 5 = no test ran: that is a failure too
    return 0


def main(argv: list[str]) -> int:
    process_env.apply()  # before torch is imported, here or in the venv's re-executed launch.py
    process_env.tune_malloc()
    # Set-up flags first (extensions may add flags later, from their preload.py).
    try:
        early, rest = cmd_args.make_parser().parse_known_args(argv)
    except cmd_args.ArgumentError as e:
        print(f"launch.py: {e}", file=sys.stderr)
        return 2
    if not early.skip_venv and not in_virtualenv():
        reexec_in_venv(argv)
    if not early.skip_install:
        try:
            install(test=early.test, ray=bool(early.workers or early.ray_address))
        except subprocess.CalledProcessError as e:
            print(f"launch.py: installing requirements failed (exit {e.returncode}); "
                  "see pip's message above", file=sys.stderr)
            return 1
    if early.test:
        return run_tests(rest)  # anything else is handed to pytest (-k, -m, paths)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from webui.server import main as server_main
    return server_main(argv)


def __getattr__(name: str):
    """launch.args: the flags of this process (A1111)."""
    if name == "args":
        from modules.plugins.compat.launch import parsed_args
        return parsed_args()
    raise AttributeError(f"module 'launch' has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
