"""Overlapping tiles blended by their distance to the tile border (the LDM code's `split_input_params`).

The map [B, C, H, W] is cut into ks x ks tiles every `stride` pixels (torch's unfold), each tile goes
through `fn` (the UNet, or the decoder, which makes each side `uf` times larger), and the results
are put back with fold:

    out = fold(fn(tile) * w) / fold(w),   w = clip(delta_border, 0.01, 0.5)

delta_border is a pixel's distance to the nearest tile edge, as a fraction of the tile side
(0 at the edge, 0.5 in the middle): a tile's centre counts most where tiles overlap. The clip keeps
every weight above 0, so every pixel covered by a tile is normalised; a constant input stays constant
and an identity fn gives the input back. H and W should be ks + k * stride (LDSR pads to multiples
of 64, at least 128, so with ks 128 and stride 64 every pixel is covered).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

CLIP_MIN, CLIP_MAX = 0.01, 0.5


def delta_border(h: int, w: int) -> torch.Tensor:
    """[h, w]: distance to the nearest border, normalised by (h - 1, w - 1)."""
    y = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) / (h - 1)
    x = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) / (w - 1)
    return torch.stack([y, x, 1 - y, 1 - x]).amin(dim=0)


def tile_weights(h: int, w: int) -> torch.Tensor:
    return delta_border(h, w).clamp(CLIP_MIN, CLIP_MAX)


def tile_count(height: int, width: int, ks: int, stride: int) -> int:
    return ((height - ks) // stride + 1) * ((width - ks) // stride + 1)


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, ks: int, stride: int,
              uf: int = 1) -> torch.Tensor:
    """fn applied to ks x ks tiles of x [B, C, H, W] (stride apart), blended into [B, C', H*uf, W*uf].

    fn gets one tile [B, C, ks, ks] at a time, in unfold's order (rows, then columns), and returns
    [B, C', ks*uf, ks*uf]. x may hold several maps stacked on channels (e.g. latent and conditioning)."""
    b, c, h, w = x.shape
    if h < ks or w < ks or (h - ks) % stride or (w - ks) % stride:
        raise ValueError(f"tiling: a {h}x{w} map is not covered by {ks}x{ks} tiles every {stride} pixels "
                         f"(sides must be {ks} + a multiple of {stride})")
    tiles = F.unfold(x, kernel_size=ks, stride=stride)  # [B, C*ks*ks, L]
    n = tiles.shape[-1]
    tiles = tiles.view(b, c, ks, ks, n)
    kso = ks * uf
    weights = tile_weights(kso, kso).to(device=x.device)  # [kso, kso]
    out = None
    for i in range(n):
        y = fn(tiles[..., i])
        if out is None:
            out = y.new_empty(b, y.shape[1], kso, kso, n)
        out[..., i] = y * weights.to(y.dtype)
    c_out = out.shape[1]
    size, kw = (h * uf, w * uf), dict(kernel_size=kso, stride=stride * uf)
    blended = F.fold(out.view(b, c_out * kso * kso, n), size, **kw)
    norm = F.fold(weights.to(out.dtype).reshape(1, kso * kso, 1).expand(1, kso * kso, n), size, **kw)
    return blended / norm
