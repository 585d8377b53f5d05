"""Overlapping tiles of an image and their blended recombination (A1111's images.split_grid /
combine_grid, used by SD upscale and Poor man's outpainting to img2img a large picture tile by tile).

split_grid: tiles of tile_w x tile_h that step by (tile - overlap) and are spread evenly so the last
one ends at the image edge. combine_grid: each tile is pasted over its left/top neighbour with a
linear ramp across the overlap, so no seam shows where two tiles disagree slightly.
"""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from PIL import Image

# tiles: [[y, h, [[x, w, tile image], ...]], ...] (A1111's layout; extensions index into it)
Grid = namedtuple("Grid", ["tiles", "tile_w", "tile_h", "image_w", "image_h", "overlap"])


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (count - 1)
    return [int(round(i * step)) for i in range(count)]


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    if overlap >= min(tile_w, tile_h):
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile ({tile_w}x{tile_h})")
    w, h = image.size
    rows = []
    for y in _starts(h, tile_h, overlap):
        row = [[x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))] for x in _starts(w, tile_w, overlap)]
        rows.append([y, tile_h, row])
    return Grid(rows, tile_w, tile_h, w, h, overlap)


def _ramp(length: int, overlap: int, axis: int) -> np.ndarray:
    """Weights of a tile over its previous neighbour: 0 -> 1 across the first `overlap` pixels."""
    ramp = np.ones(length, dtype=np.float32)
    if overlap > 0:
        ramp[:overlap] = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    return ramp[None, :, None] if axis == 1 else ramp[:, None, None]


def combine_grid(grid: Grid) -> Image.Image:
    canvas = np.zeros((grid.image_h, grid.image_w, 3), dtype=np.float32)
    for row_index, (y, h, row) in enumerate(grid.tiles):
        strip = np.zeros((min(h, grid.image_h - y), grid.image_w, 3), dtype=np.float32)
        for col_index, (x, _w, tile) in enumerate(row):
            pixels = np.asarray(tile.convert("RGB"), dtype=np.float32)[:strip.shape[0], :grid.image_w - x]
            overlap = max(0, row[col_index - 1][0] + row[col_index - 1][1] - x) if col_index else 0
            weight = _ramp(pixels.shape[1], min(overlap, pixels.shape[1]), axis=1)
            region = strip[:, x:x + pixels.shape[1]]
            region[:] = region * (1 - weight) + pixels * weight
        overlap = max(0, grid.tiles[row_index - 1][0] + grid.tiles[row_index - 1][1] - y) if row_index else 0
        weight = _ramp(strip.shape[0], min(overlap, strip.shape[0]), axis=0)
        region = canvas[y:y + strip.shape[0]]
        region[:] = region * (1 - weight) + strip * weight
    return Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8), "RGB")
