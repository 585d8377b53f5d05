"""Command-line flags, with A1111's names and meanings where A1111 has them.

The parser is built by a function (not a module-level object) so that extensions' preload.py can add
their own flags to a fresh parser, and tests can parse without touching sys.argv.
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ArgumentError(Exception):
    """A flag the user gave is wrong; the message says which and what to do."""


class _Parser(argparse.ArgumentParser):
    # argparse prints usage and exits 2 on its own; we want one clear line from launch.py instead.
    def error(self, message):
        raise ArgumentError(f"{message} (see `python launch.py --help`)")


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="launch.py", description="Stable Diffusion web UI (A1111-compatible)")
    g = p.add_argument_group("set-up")
    g.add_argument("--skip-install", action="store_true", help="do not check or install requirements")
    g.add_argument("--test", action="store_true", help="install test requirements and run every test, then exit")
    g.add_argument("--skip-venv", action="store_true", help="run in the current Python instead of ./venv")

    g = p.add_argument_group("server")
    g.add_argument("--listen", action="store_true", help="bind 0.0.0.0 so other machines can connect (default 127.0.0.1)")
    g.add_argument("--server-name", default=None, help="address to bind (overrides --listen)")
    g.add_argument("--port", type=int, default=None, help="port (default 7860; 7861 with --nowebui)")
    g.add_argument("--api", action="store_true", help="serve the /sdapi/v1 HTTP API next to the UI")
    g.add_argument("--nowebui", action="store_true", help="serve only the HTTP API")
    g.add_argument("--api-auth", default=None, help="HTTP Basic credentials for the API: user:pass[,user2:pass2]")
    g.add_argument("--api-server-stop", action="store_true",
                   help="serve /sdapi/v1/server-kill, server-restart and server-stop (A1111's flag)")
    g.add_argument("--gradio-auth", default=None, help="login for the web UI: user:pass[,user2:pass2]")
    g.add_argument("--enable-insecure-extension-access", action="store_true",
                   help="allow installing extensions from the UI even when listening beyond localhost")
    g.add_argument("--disable-all-extensions", action="store_true", help="load no extension (builtin ones included)")
    g.add_argument("--disable-extra-extensions", action="store_true", help="load only the builtin extensions")

    g = p.add_argument_group("paths")
    g.add_argument("--data-dir", type=Path, default=ROOT, help="where config.json, outputs and models live")
    g.add_argument("--ckpt-dir", type=Path, default=None, help="extra folder scanned for checkpoints")
    g.add_argument("--ckpt", type=Path, default=None, help="checkpoint to load at start")
    g.add_argument("--vae-dir", type=Path, default=None, help="folder of VAE files (default models/VAE)")
    g.add_argument("--embeddings-dir", type=Path, default=None, help="textual inversion folder (default embeddings/)")
    g.add_argument("--lora-dir", type=Path, default=None, help="LoRA folder (default models/Lora)")
    g.add_argument("--styles-file", type=Path, default=None, help="styles csv (default styles.csv in the data dir)")
    for folder in ("ESRGAN", "RealESRGAN", "SwinIR", "ScuNET", "DAT", "HAT", "GFPGAN", "Codeformer"):
        g.add_argument(f"--{folder.lower()}-models-path", type=Path, default=None,
                       help=f"folder of {folder} model files (default models/{folder})")
    g.add_argument("--allow-any-output-dir", action="store_true",
                   help="let requests and the Settings tab set output folders outside the data dir")

    g = p.add_argument_group("device and precision")
    g.add_argument("--use-cpu", nargs="+", default=[], metavar="MODULE",
                   help="run these parts on the CPU; 'all' for everything")
    g.add_argument("--device-id", type=int, default=None, help="CUDA device index")
    g.add_argument("--no-half", action="store_true", help="keep the model in fp32 on the GPU")
    g.add_argument("--no-half-vae", action="store_true", help="keep the VAE in fp32 on the GPU (on the CPU it always is)")
    g.add_argument("--bf16", action="store_true",
                   help="UNet and text encoder in bf16: on CUDA instead of fp16; on a CPU instead of fp32 "
                        "(~3x faster on CPUs with AMX)")
    g.add_argument("--precision", choices=["full", "half", "autocast"], default="autocast",
                   help="'full' = fp32 everywhere")
    g.add_argument("--medvram", action="store_true", help="keep only the running part of the model on the GPU")
    g.add_argument("--lowvram", action="store_true", help="like --medvram, splitting the UNet further")

    g = p.add_argument_group("workers (Ray; installs requirements-ray.txt on first use)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run jobs on N worker processes: one per GPU of this machine, else N CPU workers; "
                        "with --ray-address at most N of the cluster's")
    g.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="join a running Ray cluster (ray start --head ...): one worker per GPU in it")
    g.add_argument("--worker-threads", type=int, default=1, metavar="N",
                   help="torch threads (and Ray CPUs) of each CPU worker (default 1)")
    return p


def parse_args(argv: list[str], parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """Parse and validate; raises ArgumentError with a one-line message on bad input."""
    parser = parser or make_parser()
    args = parser.parse_args(argv)
    if args.port is not None and not (1 <= args.port <= 65535):
        raise ArgumentError(f"--port {args.port} is not a TCP port: use 1-65535")
    for flag in ("api_auth", "gradio_auth"):
        value = getattr(args, flag)
        if value is not None:
            parse_credentials(value, f"--{flag.replace('_', '-')}")
    if args.nowebui:
        args.api = True
    if args.workers is not None and args.workers < 1:
        raise ArgumentError(f"--workers {args.workers}: give at least 1 (leave it out to run jobs in this process)")
    if args.worker_threads < 1:
        raise ArgumentError(f"--worker-threads {args.worker_threads}: give at least 1")
    return args


def server_address(args: argparse.Namespace) -> tuple[str, int]:
    """Where to bind: 127.0.0.1 unless --listen (0.0.0.0) or --server-name say otherwise."""
    host = args.server_name or ("0.0.0.0" if args.listen else "127.0.0.1")
    port = args.port or (7861 if args.nowebui else 7860)
    return host, port


def is_localhost_only(args: argparse.Namespace) -> bool:
    host, _ = server_address(args)
    return host in ("127.0.0.1", "localhost", "::1")


def parse_credentials(text: str, flag: str = "--api-auth") -> list[tuple[str, str]]:
    """'user:pass,user2:pass2' -> [(user, pass), ...]; the password may itself contain ':'."""
    pairs = []
    for item in text.split(","):
        item = item.strip()
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise ArgumentError(f"{flag} expects user:password[,user2:password2], got {item!r}")
        pairs.append((user, password))
    return pairs
