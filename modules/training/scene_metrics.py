"""What a picture of the depth / x4 demo shows: colour and centre of each shape, PSNR, depth agreement.

Pictures are uint8 RGB arrays [H, W, 3]. A pixel is a shape's colour when it is saturated (the
scenes' wall and floor are grays) and nearest that palette colour, so no background model is needed.
"""
from __future__ import annotations

import numpy as np

from .image_metrics import nearest_color

SATURATION = 50  # max - min channel above this: a coloured pixel, not wall or floor


def colored(image: np.ndarray) -> np.ndarray:
    """bool [H, W]: the saturated pixels."""
    img = image.astype(np.int16)
    return (img.max(-1) - img.min(-1)) > SATURATION


def color_mask(image: np.ndarray, color: str) -> np.ndarray:
    """bool [H, W]: saturated pixels nearest the palette colour `color`."""
    return colored(image) & (nearest_color(image) == color)


def region_color(image: np.ndarray, region: np.ndarray) -> str | None:
    """The palette colour most saturated pixels of `region` (bool [H, W]) are nearest to."""
    mask = colored(image) & region
    if mask.sum() < max(4, 0.2 * region.sum()):
        return None  # mostly gray there: no shape was drawn
    names, counts = np.unique(nearest_color(image)[mask], return_counts=True)
    return str(names[counts.argmax()])


def centre(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) centre of mass of a bool mask in pixels, None when (nearly) empty."""
    if mask.sum() < 4:
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.mean() + 0.5), float(ys.mean() + 0.5)


def distance(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float:
    if a is None or b is None:
        return float("inf")
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 pictures of the same size."""
    mse = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps of the same size (e.g. estimated and true inverse depth)."""
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (0 when both are empty)."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0
