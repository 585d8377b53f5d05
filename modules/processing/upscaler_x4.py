"""The SD 2 x4 upscaler (`x4-upscaler-ema`, `x4-upscaling.yaml`): a latent diffusion model whose UNet
sees, besides its 4 latent channels, the low-res RGB image (3 channels, noised by the
low_scale_model's schedule to `noise_level`) and gets that level as its class label (c_adm).
v-prediction; VAE with f = 4 and scale factor 0.08333, so the latent is the size of the low-res image
and the output 4x it. Defaults are Stability's script's (noise level 20, CFG 9, 50 DDIM steps).

Large images run in overlapping tiles (tile size and overlap in low-res pixels) blended with
feathered (linear ramp) weights, so memory stays that of one tile whatever the input size. All tiles
take their slice of one image-wide starting noise and one noised low-res image, so overlaps start
from the same values and differ only by what each tile's context adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from PIL import Image

from modules import infotext
from modules.models import family
from modules.processing import vae
from modules.processing.hybrid_sampling import NoiseLevelConditioned, SamplingSettings, sample_hybrid
from modules.sampling import rng

UNET_MULTIPLE = 8  # the x4 UNet downsamples 3 times: latent sides must be multiples of 8


def _default_sampling() -> SamplingSettings:
    return SamplingSettings(steps=50, cfg_scale=9.0, sampler_name="DDIM")


@dataclass
class X4Settings:
    sampling: SamplingSettings = field(default_factory=_default_sampling)
    noise_level: int = 20  # 0 .. max_noise_level - 1 (350): more = more freedom, less fidelity
    tile_size: int = 128  # low-res pixels per tile side (128 -> 512 output, the training size); 0: no tiles
    tile_overlap: int = 32  # low-res pixels shared by neighbouring tiles, blended


@dataclass
class X4Result:
    image: Image.Image
    seed: int
    params: dict  # A1111-style infotext parameters
    infotext: str


def is_x4_model(model) -> bool:
    """The x4 family (told by its low_scale_model: modules.models.family) with the UNet that takes the
    low-res RGB beside the latent."""
    if family.of_model(model) is not family.FAMILIES["x4-upscaling"]:
        return False
    return model.model.diffusion_model.config.in_channels == model.latent_channels + 3


def _check(model, settings: X4Settings) -> None:
    if not is_x4_model(model):
        raise ValueError("'SD x4' needs the SD 2 x4 upscaler checkpoint (x4-upscaler-ema, 7-channel UNet) as "
                         "the x4 model: load it, or pick Lanczos / Nearest")
    limit = model.low_scale_model.max_noise_level
    if not 0 <= int(settings.noise_level) < limit:
        raise ValueError(f"noise level must be between 0 and {limit - 1}, got {settings.noise_level}")
    if settings.tile_size and settings.tile_size < 2 * UNET_MULTIPLE:
        raise ValueError(f"tile size must be 0 (no tiling) or at least {2 * UNET_MULTIPLE} pixels, "
                         f"got {settings.tile_size}")
    if settings.tile_size and not 0 <= settings.tile_overlap <= settings.tile_size // 2:
        raise ValueError(f"tile overlap must be between 0 and half the tile size ({settings.tile_size // 2}), "
                         f"got {settings.tile_overlap}")


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    ph, pw = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class _TileUpscaler:
    """One tile [1, 3 + C, h, w] (noised low-res RGB, then its starting noise) -> image [1, 3, 4h, 4w]."""

    def __init__(self, model, settings: X4Settings, seed: int, level: torch.Tensor, encoder, interrupt):
        self.model, self.settings, self.seed = model, settings, seed
        self.inner = NoiseLevelConditioned(model, level)
        self.encoder, self.interrupt = encoder, interrupt

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        h, w = tile.shape[-2:]
        padded = _pad_to_multiple(tile, UNET_MULTIPLE)
        x_aug, noise = padded[:, :3], padded[:, 3:]
        latent = sample_hybrid(self.model, self.settings.sampling, x_aug, tuple(noise.shape[1:]), seed=self.seed,
                               encoder=self.encoder, interrupt=self.interrupt, inner=self.inner, noise=noise)
        f = self.model.vae_scale_factor
        return vae.decode(self.model, latent)[:, :, : h * f, : w * f]


def upscale_x4(model, image: Image.Image, settings: Optional[X4Settings] = None, *, encoder: Any = None,
               interrupt: Any = None) -> X4Result:
    """image (any size) -> an image 4x its width and height (the model's VAE factor)."""
    settings = settings or X4Settings()
    _check(model, settings)
    device = model.alphas_cumprod.device
    low = vae.pil_to_tensor([image.convert("RGB")]).to(device)
    seed = rng.fix_seed(settings.sampling.seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # the noise augmentation of the whole image, once (tiles take slices)
        x_aug, level = model.low_scale_model(low.cpu(), int(settings.noise_level), generator=generator)
    noise = rng.randn(seed, (model.latent_channels, *low.shape[-2:]))[None]
    packed = torch.cat([x_aug, noise], dim=1).to(device)
    upscale_tile = _TileUpscaler(model, settings, seed, level.to(device), encoder, interrupt)
    h, w = low.shape[-2:]
    if settings.tile_size and max(h, w) > settings.tile_size:
        out = vae.run_tiled(upscale_tile, packed, settings.tile_size, settings.tile_overlap,
                            model.vae_scale_factor, 3)
    else:
        out = upscale_tile(packed)
    params = _params(settings, seed, out.shape[-1], out.shape[-2])
    s = settings.sampling
    return X4Result(image=vae.tensor_to_pil(out)[0], seed=seed, params=params,
                    infotext=infotext.create_infotext(s.prompt, s.negative_prompt, params))


def _params(settings: X4Settings, seed: int, w: int, h: int) -> dict:
    s = settings.sampling
    tiles = f"{settings.tile_size}/{settings.tile_overlap}" if settings.tile_size else None
    return {"Steps": s.steps, "Sampler": s.sampler_name, "Schedule type": s.scheduler, "CFG scale": s.cfg_scale,
            "Seed": seed, "Size": f"{w}x{h}", "Postprocess upscaler": "SD x4",
            "SD x4 noise level": settings.noise_level, "SD x4 tiles": tiles}
