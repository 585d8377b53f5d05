"""Shared set-up of the API tests: a data dir with tiny real checkpoints, a context wired to it,
and small helpers the way clients use the API (base64 PNGs)."""
from __future__ import annotations

import atexit
import base64
import functools
import io
import os
import shutil
import tempfile
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from modules import cmd_args
from modules.context import create_context
from tests.tiny import make_tiny_model, tiny_config_path


@functools.cache
def _checkpoint_cache() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="tiny-checkpoints-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def _cached_checkpoint(config: str, seed: int) -> Path:
    path = _checkpoint_cache() / f"{config}-{seed}.safetensors"
    model = make_tiny_model(config, seed=seed)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, path)
    return path


def write_tiny_checkpoint(folder: Path, name: str, config: str = "tiny-v1", seed: int = 0) -> Path:
    """A tiny random-weight checkpoint as users have them: `<name>.safetensors` + `<name>.yaml`.

    Each (config, seed) is written once per test run and hard-linked into the folders that want it:
    some 80 data dirs of 15 MB copies filled a CI disk. The app replaces files rather than writing
    into them (modules/atomic.py), so the links never change under each other's tests."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    path.unlink(missing_ok=True)  # never copy into an existing file: it may be one of the links
    try:
        os.link(_cached_checkpoint(config, seed), path)
    except OSError:  # another file system, or one without hard links
        shutil.copy(_cached_checkpoint(config, seed), path)
    shutil.copy(tiny_config_path(config), folder / f"{name}.yaml")
    return path


def make_context(data_dir: Path, *flags: str):
    """An AppContext over data_dir whose model manager sees only data_dir's checkpoints (not the
    shipped demo model), wired as the server wires it."""
    from modules.startup import attach_services, create_model_manager

    args = cmd_args.parse_args(["--api", "--data-dir", str(data_dir), *flags])
    ctx = create_context(args)
    ctx.models = create_model_manager(ctx, [ctx.paths.models_dir / "Stable-diffusion"])
    attach_services(ctx)
    return ctx


def make_data_dir(root: Path) -> Path:
    """Two tiny v1 checkpoints (different weights) and a tiny v1 inpainting one."""
    ckpts = root / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "tiny-a", "tiny-v1", seed=1)
    write_tiny_checkpoint(ckpts, "tiny-b", "tiny-v1", seed=2)
    write_tiny_checkpoint(ckpts, "tiny-inpaint", "tiny-v1-inpainting", seed=3)
    return root


def png_b64(image: Image.Image, **info) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def b64_image(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def gradient(width: int = 64, height: int = 64) -> Image.Image:
    x = torch.linspace(0, 255, width).repeat(height, 1)
    y = torch.linspace(0, 255, height).unsqueeze(1).repeat(1, width)
    rgb = torch.stack([x, y, 255 - x], dim=-1).to(torch.uint8).numpy()
    return Image.fromarray(rgb, "RGB")
