"""The "SD x4" upscaler as a service: finds the x4 checkpoint in the catalog and keeps it loaded
beside the main model (as A1111 keeps upscaler models apart from the SD checkpoint).

Registered in the upscaler table (ctx.services.upscalers) as "SD x4": Extras, the API and hires fix.
A user's x4 checkpoint wins over the shipped demo (models/Stable-diffusion/demo-x4).
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from modules.processing.upscaler_x4 import X4Settings, is_x4_model, upscale_x4
from modules.side_models import SideModel, has_key_prefix, yaml_says
from modules.upscalers import Upscaler

X4_KEY_PREFIX = "low_scale_model."


def is_x4_checkpoint(path: Path) -> bool:
    """Cheap check without loading weights: the yaml beside it, or the safetensors header's keys."""
    says = yaml_says(path, "LatentUpscaleDiffusion")
    if says is not None:
        return says
    if path.suffix == ".safetensors":
        return has_key_prefix(path, X4_KEY_PREFIX)
    return "x4" in path.name.lower() and "upscal" in path.name.lower()


class X4Upscaler:
    """`upscale_once(image, prompt=...)`: one 4x pass; `entry()` is its row of the upscaler table."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.side = SideModel(ctx, is_x4_checkpoint, is_x4_model, (
            "'SD x4' needs the SD 2 x4 upscaler checkpoint (x4-upscaler-ema.safetensors, with x4-upscaling.yaml "
            "beside it) in models/Stable-diffusion; put it there and refresh, or pick Lanczos / Nearest"))

    def settings(self, prompt: str = "", negative_prompt: str = "") -> X4Settings:
        s = X4Settings(noise_level=int(self.ctx.opts.x4_noise_level),
                       tile_size=int(self.ctx.opts.tiled_upscale_tile_size),
                       tile_overlap=int(self.ctx.opts.tiled_upscale_tile_overlap))
        s.sampling.prompt, s.sampling.negative_prompt = prompt, negative_prompt
        return s

    def checkpoint(self) -> Path | None:
        return self.side.checkpoint()

    def model(self):
        return self.side.model()

    def upscale_once(self, image: Image.Image, prompt: str = "", negative_prompt: str = "") -> Image.Image:
        return upscale_x4(self.model(), image, self.settings(prompt, negative_prompt)).image

    def entry(self) -> Upscaler:
        return Upscaler("SD x4", scale=4, run=self.upscale_once, model_name="SD x4", service=self)
