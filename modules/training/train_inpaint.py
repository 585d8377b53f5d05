"""Inpainting fine-tune: a trained txt2img model becomes a 9-channel inpainting model.

SD's inpainting checkpoints (sd-v1-5-inpainting) were made this way: the UNet's first convolution
gets 5 more input channels - the mask [B, 1, h, w] and the masked image's latent [B, 4, h, w], in
that order (LatentInpaintDiffusion's c_concat) - whose weights start at zero, so training starts
from the txt2img model's behaviour; then the model trains on random masks, a quarter of them
covering everything (so it still does txt2img). The masked image has the masked pixels set to 0
(grey in [-1, 1]) and is encoded with the posterior mode, exactly as the app builds it at inference
(modules.processing.inpaint.masked_image_conditioning, shared with it).
"""
from __future__ import annotations

import numpy as np
import torch

from modules.processing.inpaint import masked_image_conditioning

FIRST_CONV = "input_blocks.0.0.weight"
EXTRA_CHANNELS = 5  # mask + masked-image latent


def inpainting_unet_state(txt2img_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A txt2img UNet state dict -> the 9-channel one: new input channels zero-initialised."""
    state = dict(txt2img_state)
    w = state[FIRST_CONV]  # [out, 4, 3, 3]
    extra = torch.zeros(w.shape[0], EXTRA_CHANNELS, *w.shape[2:], dtype=w.dtype)
    state[FIRST_CONV] = torch.cat([w, extra], dim=1)
    return state


def random_masks(rng: np.random.Generator, n: int, size: int, grid: int) -> np.ndarray:
    """[n, 1, size, size] float masks, 1 = repaint, edges on the latent grid (multiples of `grid` px).

    A quarter cover everything (txt2img), a quarter the left or right half (the demo's two
    positions), the rest a random rectangle of at least a quarter of each side.
    """
    masks = np.zeros((n, 1, size, size), dtype=np.float32)
    cells = size // grid
    for i in range(n):
        kind = rng.random()
        if kind < 0.25:
            masks[i] = 1.0
        elif kind < 0.5:
            half = size // 2
            if rng.random() < 0.5:
                masks[i, :, :, :half] = 1.0
            else:
                masks[i, :, :, half:] = 1.0
        else:
            h, w = rng.integers(max(1, cells // 4), cells + 1, size=2)
            y, x = rng.integers(0, cells - h + 1), rng.integers(0, cells - w + 1)
            masks[i, :, y * grid:(y + h) * grid, x * grid:(x + w) * grid] = 1.0
    return masks


@torch.no_grad()
def inpainting_conditioning(model, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """c_concat for images [B, 3, H, W] in [-1, 1] and masks [B, 1, H, W]: the app's own construction
    at full mask strength, the batch encoded at once (the app encodes image by image)."""
    def encode(x):
        return model.get_first_stage_encoding(model.encode_first_stage(x).mode())

    return masked_image_conditioning(model, images, masks, 1.0, encode)
