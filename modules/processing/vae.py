"""VAE decode/encode for the pipelines, whole or in overlapping tiles, and image <-> tensor.

Tiled mode (option `sd_vae_tiled`) bounds memory for large images: the latent (or image) is cut into
overlapping tiles, each goes through the VAE alone, and the results are blended with weights that
fall off linearly towards tile edges, so seams average out. The VAE's receptive field makes tiles
differ slightly from the whole-image result; that is the price of the bounded memory.

Images are encoded with the posterior's mode (its mean), so img2img is deterministic for a seed.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from modules.sampling.cfg_denoiser import NansError

VAE_NAN_MESSAGE = ("the VAE produced NaNs: try --no-half-vae (half precision overflows in some VAEs), "
                   "or another VAE")
TILE_LATENT = 64      # latent cells per tile side (512 px for SD)
OVERLAP_LATENT = 16   # latent cells shared by neighbouring tiles


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB PIL images of equal size -> [B, 3, H, W] in [-1, 1]."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def tensor_to_pil(x: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in about [-1, 1] -> RGB PIL images (clamped, rounded as A1111: 255 * x)."""
    x = torch.clamp((x.float() + 1.0) / 2.0, 0.0, 1.0)
    arrays = (255.0 * x.permute(0, 2, 3, 1).cpu().numpy()).astype(np.uint8)
    return [Image.fromarray(a) for a in arrays]


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blend weights: rise over `overlap` cells at inner edges, flat elsewhere."""
    w = torch.ones(n)
    if overlap > 0:
        ramp = torch.linspace(1.0 / (overlap + 1), 1.0, overlap)[: n]
        if not at_start:
            w[: len(ramp)] = ramp
        if not at_end:
            w[n - len(ramp):] = torch.minimum(w[n - len(ramp):], ramp.flip(0))
    return w


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def run_tiled(fn, x: torch.Tensor, tile: int, overlap: int, scale: float, out_channels: int) -> torch.Tensor:
    """Apply fn to overlapping tiles of x [B, C, H, W]; fn maps a tile (h, w) to (h*scale, w*scale)
    with out_channels channels. Results are blended with linear ramps in the overlaps."""
    b, _, h, w = x.shape
    out_h, out_w = round(h * scale), round(w * scale)
    out = torch.zeros(b, out_channels, out_h, out_w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, out_h, out_w, dtype=torch.float32, device=x.device)
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    for y in ys:
        for x0 in xs:
            th, tw = min(tile, h - y), min(tile, w - x0)
            part = fn(x[:, :, y:y + th, x0:x0 + tw]).float()
            oy, ox, oh, ow = round(y * scale), round(x0 * scale), part.shape[2], part.shape[3]
            o = round(overlap * scale)
            wy = _ramp(oh, o, y == ys[0], y == ys[-1]).to(x.device)
            wx = _ramp(ow, o, x0 == xs[0], x0 == xs[-1]).to(x.device)
            mask = (wy[:, None] * wx[None, :])[None, None]
            out[:, :, oy:oy + oh, ox:ox + ow] += part * mask
            weight[:, :, oy:oy + oh, ox:ox + ow] += mask
    return out / weight


def decode(model, latent: torch.Tensor, tiled: bool = False, check_nans: bool = True) -> torch.Tensor:
    """Scaled latent [B, C, h, w] -> image [B, 3, H, W] (float32, about [-1, 1]), one image at a time
    to keep peak memory at one image's activations."""
    outs = []
    with torch.no_grad():
        for z in latent.split(1):
            if tiled:
                f = model.vae_scale_factor
                x = run_tiled(model.decode_first_stage, z, TILE_LATENT, OVERLAP_LATENT, f, 3)
            else:
                x = model.decode_first_stage(z).float()
            outs.append(x)
    images = torch.cat(outs)
    if check_nans and torch.isnan(images).any():
        raise NansError(VAE_NAN_MESSAGE)
    return images


def encode(model, images: torch.Tensor, tiled: bool = False) -> torch.Tensor:
    """Image [B, 3, H, W] in [-1, 1] -> scaled latent (posterior mode), float32."""
    device = next(model.first_stage_model.parameters()).device
    outs = []
    with torch.no_grad():
        for x in images.split(1):
            x = x.to(device)
            if tiled:
                f = model.vae_scale_factor

                def enc(tile):
                    return model.get_first_stage_encoding(model.encode_first_stage(tile).mode())

                z = run_tiled(enc, x, TILE_LATENT * f, OVERLAP_LATENT * f, 1.0 / f, model.latent_channels)
            else:
                z = model.get_first_stage_encoding(model.encode_first_stage(x).mode())
            outs.append(z.float())
    return torch.cat(outs)
