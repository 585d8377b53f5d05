"""Hires fix: the target size, and the upscale between the two passes (latent or image).

Latent upscalers interpolate the first pass's latent (cheap, but the second pass needs a denoising
strength of about 0.5 or more to remove the blur); image upscalers decode, upscale in pixels and
encode again. Names are A1111's, so infotexts and API requests carry over.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from modules.upscalers import UpscalerTable


@dataclass(frozen=True)
class LatentUpscaleMode:
    mode: str
    antialias: bool


LATENT_UPSCALE_MODES: dict[str, LatentUpscaleMode] = {
    "Latent": LatentUpscaleMode("bilinear", False),
    "Latent (antialiased)": LatentUpscaleMode("bilinear", True),
    "Latent (bicubic)": LatentUpscaleMode("bicubic", False),
    "Latent (bicubic antialiased)": LatentUpscaleMode("bicubic", True),
    "Latent (nearest)": LatentUpscaleMode("nearest", False),
    "Latent (nearest-exact)": LatentUpscaleMode("nearest-exact", False),
}
DEFAULT_UPSCALER = "Latent"


def upscaler_names(table: UpscalerTable) -> list[str]:
    """What hr_upscaler accepts: the latent modes, then the image upscalers of the table."""
    return [*LATENT_UPSCALE_MODES, *table.names()]


def target_size(width: int, height: int, scale: float, resize_x: int, resize_y: int,
                factor: int) -> tuple[int, int, int, int]:
    """(upscale_to_x, upscale_to_y, final_x, final_y) in pixels, multiples of `factor`.

    scale when no resize is given; one resize side given: keep the aspect ratio; both: upscale to
    cover the box, then crop the centre (A1111's rule), so the final size is exactly resize_x x resize_y."""
    def fit(v: float) -> int:
        return max(factor, int(v) // factor * factor)

    if not resize_x and not resize_y:
        x, y = fit(width * scale), fit(height * scale)
        return x, y, x, y
    if not resize_y:
        x = fit(resize_x)
        y = fit(resize_x * height / width)
        return x, y, x, y
    if not resize_x:
        y = fit(resize_y)
        x = fit(resize_y * width / height)
        return x, y, x, y
    final_x, final_y = fit(resize_x), fit(resize_y)
    if final_x / final_y > width / height:  # wider box: scale by width, crop height
        return final_x, fit(-(-final_x * height // width) + factor - 1), final_x, final_y
    return fit(-(-final_y * width // height) + factor - 1), final_y, final_x, final_y


def upscale_latent(latent: torch.Tensor, mode_name: str, width: int, height: int, final_w: int,
                   final_h: int, factor: int) -> torch.Tensor:
    """Interpolate the latent to (height, width) pixels' worth of cells, then crop the centre to the final size."""
    m = LATENT_UPSCALE_MODES[mode_name]
    size = (height // factor, width // factor)
    kwargs = {"antialias": m.antialias} if m.mode in ("bilinear", "bicubic") else {}
    out = F.interpolate(latent, size=size, mode=m.mode, **kwargs)
    return crop_center(out, final_h // factor, final_w // factor)


def crop_center(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, top:top + h, left:left + w]


def upscale_image(table: UpscalerTable, image: Image.Image, name: str, width: int, height: int, final_w: int,
                  final_h: int) -> Image.Image:
    """Upscale a first-pass image with a named image upscaler ("None" resizes with Lanczos, as
    A1111), then crop the centre to the final size."""
    out = table.upscale(image, "Lanczos" if name == "None" else name, width, height)
    left, top = (width - final_w) // 2, (height - final_h) // 2
    return out.crop((left, top, left + final_w, top + final_h)) if (final_w, final_h) != (width, height) else out


def check_upscaler(name: str | None, table: UpscalerTable) -> str:
    name = name or DEFAULT_UPSCALER
    if name not in LATENT_UPSCALE_MODES and name not in table:
        raise ValueError(f"unknown hires upscaler {name!r}: use one of {', '.join(upscaler_names(table))}")
    return name
