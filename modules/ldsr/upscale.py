"""One image through LDSR, step by step as A1111 (extensions-builtin/LDSR, the latent-diffusion
notebook's path) runs it:

1. scale s: the image is Lanczos-resized by s/4 (sides rounded up) unless s = 4, so the 4x model
   lands on s times the input;
2. padded right/bottom by repeating the edge pixels to multiples of 64, at least 128;
3. DDIM (eta 1, `steps`) from noise the size of the padded low-res image; the UNet sees
   [z_t, low-res in [-1, 1]] (6 channels) in 128x128 tiles every 64 px, blended (tiling.py);
4. the sample is decoded in the same tiles (512 px out, every 256 px), snapped to the VQ codebook;
5. clamp to [-1, 1], to 0..255 by truncation, crop the padding away (4x the step-1 size).

The starting noise and every step's noise come from one seeded generator (A1111 draws them from the
global RNG), so a seed gives the same image again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image

from . import ddim
from .tiling import run_tiled, tile_count

SCALE = 4  # the model's factor: its first stage is VQ-f4 and the latent is the low-res image's size
TILE, STRIDE = 128, 64  # latent pixels, A1111's split_input_params
PAD_MULTIPLE, MIN_SIDE = 64, 128


@dataclass
class LDSRSettings:
    steps: int = 100  # A1111's ldsr_steps (1..200)
    eta: float = 1.0  # A1111 fixes it at 1
    seed: int = 0


def check_model(model) -> None:
    """Raise ValueError unless `model` has LDSR's layout (concat conditioning on the RGB image, f4)."""
    unet_in = model.model.diffusion_model.config.in_channels
    if model.conditioning_key != "concat" or unet_in != model.latent_channels + 3 or model.vae_scale_factor != SCALE:
        raise ValueError("this is not an LDSR model: LDSR conditions its UNet on the RGB image by concatenation "
                         f"(latent + 3 channels) and has a 4x first stage; got conditioning "
                         f"{model.conditioning_key!r}, {unet_in} UNet input channels, {model.vae_scale_factor}x")


def pre_resize(image: Image.Image, scale: float) -> Image.Image:
    """Step 1: the image the 4x model must make 4x larger to reach `scale` times the input."""
    rate = scale / SCALE
    if rate == 1:
        return image
    size = (max(1, math.ceil(image.width * rate)), max(1, math.ceil(image.height * rate)))
    return image.resize(size, Image.LANCZOS)


def pad_edge(image: Image.Image) -> Image.Image:
    """Step 2: right/bottom padding by edge replication to multiples of 64, at least 128."""
    arr = np.asarray(image)
    h = max(2, math.ceil(arr.shape[0] / PAD_MULTIPLE)) * PAD_MULTIPLE
    w = max(2, math.ceil(arr.shape[1] / PAD_MULTIPLE)) * PAD_MULTIPLE
    return Image.fromarray(np.pad(arr, ((0, h - arr.shape[0]), (0, w - arr.shape[1]), (0, 0)), mode="edge"))


def to_model_range(image: Image.Image, device) -> torch.Tensor:
    """PIL RGB -> [1, 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    return (2 * x - 1).to(device)


def to_image(x: torch.Tensor) -> Image.Image:
    """Step 5 (without the crop): clamp, 0..255, truncation to uint8 (numpy astype), as the original."""
    arr = ((x[0].float().clamp(-1, 1) + 1) / 2 * 255).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr.astype(np.uint8))


def sampling_steps(steps: int) -> int:
    """DDIM steps LDSR runs for the `steps` setting (a few more where steps do not divide 1000)."""
    return len(ddim.ddim_timesteps(steps))


def super_resolution(model, image: Image.Image, settings: Optional[LDSRSettings] = None, scale: float = SCALE,
                     callback: Optional[Callable[[int, int], None]] = None,
                     should_stop: Optional[Callable[[], bool]] = None) -> Image.Image:
    """image -> LDSR output, 4x the step-1 size (about `scale` times the input).

    callback(done, total) after each DDIM step; should_stop() before each: True ends sampling with the
    last x0 prediction, which is decoded (an interrupted run still returns an image)."""
    settings = settings or LDSRSettings()
    check_model(model)
    low = pre_resize(image.convert("RGB"), scale)
    padded = pad_edge(low)
    device = model.alphas_cumprod.device
    cond = to_model_range(padded, device).to(model.dtype)
    channels = model.latent_channels
    shape = (1, channels, cond.shape[2], cond.shape[3])

    def unet_tile(tile: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model.apply_model(tile[:, :channels], t, {"c_concat": [tile[:, channels:]]})

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return run_tiled(lambda tile: unet_tile(tile, t), torch.cat([x.to(cond.dtype), cond], dim=1), TILE, STRIDE)

    schedule = ddim.make_schedule(model.alphas_cumprod, settings.steps, settings.eta)
    generator = torch.Generator().manual_seed(int(settings.seed))
    with torch.no_grad():
        latent = ddim.sample(eps, shape, schedule, generator, device, callback, should_stop)
        decoded = run_tiled(model.decode_first_stage, latent, TILE, STRIDE, uf=SCALE)
    return to_image(decoded).crop((0, 0, low.width * SCALE, low.height * SCALE))


def unet_calls(image_size: tuple, scale: float, steps: int) -> int:
    """UNet evaluations of one run: tiles x DDIM steps (for progress and time estimates)."""
    w, h = (max(1, math.ceil(s * scale / SCALE)) for s in image_size)
    pad = [max(2, math.ceil(s / PAD_MULTIPLE)) * PAD_MULTIPLE for s in (h, w)]
    return tile_count(pad[0], pad[1], TILE, STRIDE) * sampling_steps(steps)
