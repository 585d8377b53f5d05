"""The "SD x4" upscaler as a service: finds the x4 checkpoint in the catalog and keeps it loaded
beside the main model (as A1111 keeps upscaler models apart from the SD checkpoint).

Registered in the upscaler table (ctx.services.upscalers) as "SD x4": Extras, the API and hires fix.
"""
from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image
from safetensors import safe_open

from modules.models.loader import load_model
from modules.processing.upscaler_x4 import X4Settings, is_x4_model, upscale_x4
from modules.upscalers import Upscaler

X4_KEY_PREFIX = "low_scale_model."


def is_x4_checkpoint(path: Path) -> bool:
    """Cheap check without loading weights: the yaml beside it, or the safetensors header's keys."""
    yaml = path.with_suffix(".yaml")
    if yaml.exists():
        return "LatentUpscaleDiffusion" in yaml.read_text(errors="replace")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return any(k.startswith(X4_KEY_PREFIX) for k in f.keys())
        except Exception:  # unreadable files are reported when someone loads them
            return False
    return "x4" in path.name.lower() and "upscal" in path.name.lower()


class X4Upscaler:
    """`upscale_once(image, prompt=...)`: one 4x pass; `entry()` is its row of the upscaler table."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._lock = threading.Lock()
        self._model = None
        self._path: Path | None = None

    def settings(self, prompt: str = "", negative_prompt: str = "") -> X4Settings:
        s = X4Settings(noise_level=int(self.ctx.opts.x4_noise_level),
                       tile_size=int(self.ctx.opts.tiled_upscale_tile_size),
                       tile_overlap=int(self.ctx.opts.tiled_upscale_tile_overlap))
        s.sampling.prompt, s.sampling.negative_prompt = prompt, negative_prompt
        return s

    def checkpoint(self) -> Path | None:
        for info in self.ctx.models.catalog.list():
            path = Path(info.filename)
            if is_x4_checkpoint(path):
                return path
        return None

    def model(self):
        current = self.ctx.models.current
        if current is not None and is_x4_model(current.model):
            return current.model
        with self._lock:
            path = self.checkpoint()
            if path is None:
                raise ValueError("'SD x4' needs the SD 2 x4 upscaler checkpoint (x4-upscaler-ema.safetensors, with "
                                 "x4-upscaling.yaml beside it) in models/Stable-diffusion; put it there and "
                                 "refresh, or pick Lanczos / Nearest")
            if self._path != path:
                self._model = None  # free the old one first
                manager = self.ctx.models
                self._model = load_model(path, device=manager.device, dtype=manager.dtype_unet,
                                         dtype_vae=manager.dtype_vae)
                self._path = path
            return self._model

    def upscale_once(self, image: Image.Image, prompt: str = "", negative_prompt: str = "") -> Image.Image:
        return upscale_x4(self.model(), image, self.settings(prompt, negative_prompt)).image

    def entry(self) -> Upscaler:
        return Upscaler("SD x4", scale=4, run=self.upscale_once, model_name="SD x4")
