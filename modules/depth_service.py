"""The depth model of depth2img (the tab, /sdapi/v1/depth2img; modules.generation's depth2img task).

The loaded checkpoint when it is a depth model; otherwise a depth checkpoint from the catalog (a
user's 512-depth-ema before the shipped demo in models/Stable-diffusion/demo-depth), kept loaded
beside the main model as the x4 upscaler is, so depth2img works out of the box.
"""
from __future__ import annotations

from pathlib import Path

from modules.processing.depth2img import is_depth_model
from modules.side_models import SideModel, has_key_prefix, yaml_says

DEPTH_KEY_PREFIX = "depth_model."


def is_depth_checkpoint(path: Path) -> bool:
    """Cheap check without loading weights: the yaml beside it, or MiDaS keys in the safetensors header."""
    says = yaml_says(path, "LatentDepth2ImageDiffusion")
    if says is not None:
        return says
    return has_key_prefix(path, DEPTH_KEY_PREFIX) or (path.suffix == ".ckpt" and "depth" in path.stem.lower())


def depth_models(ctx) -> SideModel:
    return SideModel(ctx, is_depth_checkpoint, is_depth_model, (
        "depth2img needs an SD 2 depth checkpoint (512-depth-ema, with v2-midas-inference.yaml beside it) in "
        "models/Stable-diffusion: put it there and refresh, or load one in the checkpoint dropdown"))
