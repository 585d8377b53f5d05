"""What a generated shapes image shows: foreground mask, dominant colour, side and shape.

Used to measure the demo model (does "a red circle on the left" give a red circle on the left?) and
to weight the autoencoder's reconstruction loss towards the foreground. Works on uint8 RGB arrays
[H, W, 3]; the background colour is taken from the image border, so no scene description is needed.
"""
from __future__ import annotations

import numpy as np

from .shapes import COLORS

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background that counts as foreground


def background_color(image: np.ndarray) -> np.ndarray:
    """Median colour of the one-pixel border."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def foreground_mask(image: np.ndarray, distance: float = FOREGROUND_DISTANCE) -> np.ndarray:
    """bool [H, W]: pixels far from the border's colour."""
    diff = image.astype(np.float32) - background_color(image)
    return np.sqrt((diff ** 2).sum(-1)) > distance


def color_share(image: np.ndarray, color: str) -> float:
    """Share of all pixels whose nearest palette colour is `color` and that are foreground."""
    mask = foreground_mask(image)
    return float((nearest_color(image) == color)[mask].sum() / mask.size)


def nearest_color(image: np.ndarray) -> np.ndarray:
    """str [H, W]: the name of the nearest palette colour for every pixel."""
    names = list(COLORS)
    palette = np.array([COLORS[n] for n in names], dtype=np.float32)
    dist = ((image.astype(np.float32)[..., None, :] - palette) ** 2).sum(-1)
    return np.array(names)[dist.argmin(-1)]


def dominant_color(image: np.ndarray) -> str | None:
    """The palette colour most foreground pixels are nearest to; None when there is no foreground."""
    mask = foreground_mask(image)
    if mask.sum() < 4:
        return None
    names, counts = np.unique(nearest_color(image)[mask], return_counts=True)
    return str(names[counts.argmax()])


def side(image: np.ndarray) -> str | None:
    """"left" or "right": which half holds the foreground's centre of mass."""
    mask = foreground_mask(image)
    if mask.sum() < 4:
        return None
    cx = np.nonzero(mask)[1].mean() + 0.5
    return "left" if cx < image.shape[1] / 2 else "right"


def shape(image: np.ndarray) -> str | None:
    """"triangle", "square" or "circle" from the foreground's outline: a triangle (apex up) is much
    narrower at the top than at the bottom; a square fills the corners of its bounding box."""
    mask = foreground_mask(image)
    if mask.sum() < 4:
        return None
    ys, xs = np.nonzero(mask)
    box = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = box.shape
    qh, qw = max(1, h // 4), max(1, w // 4)
    top, bottom = box[:qh].sum(1).mean(), box[-qh:].sum(1).mean()
    if top < 0.6 * bottom:
        return "triangle"
    corners = np.concatenate([box[:qh, :qw].ravel(), box[:qh, -qw:].ravel(),
                              box[-qh:, :qw].ravel(), box[-qh:, -qw:].ravel()])
    return "square" if corners.mean() > 0.6 else "circle"


def size(image: np.ndarray, threshold: float = 0.38) -> str | None:
    """"small" or "large": the foreground's bounding-box side (the larger one) as a fraction of the
    image, against a threshold between the trained widths (small 0.26-0.34, large 0.42-0.56)."""
    mask = foreground_mask(image)
    if mask.sum() < 4:
        return None
    ys, xs = np.nonzero(mask)
    extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) / image.shape[1]
    return "small" if extent < threshold else "large"


def background(image: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    """The name of the palette colour nearest to the border's median colour."""
    names = list(palette)
    dist = ((np.array([palette[n] for n in names], dtype=np.float32) - background_color(image)) ** 2).sum(-1)
    return names[int(dist.argmin())]
