"""The LatentDiffusion-compatible wrapper (`ldm.models.diffusion.ddpm.LatentDiffusion` and kin).

Holds the three networks under their checkpoint names (`model.diffusion_model`, `first_stage_model`,
`cond_stage_model`), the 12 DDPM schedule buffers (Ho et al. 2020) and the interface k-diffusion's
CompVisDenoiser / CompVisVDenoiser and A1111-style code expect: `alphas_cumprod`, `apply_model`,
`get_learned_conditioning`, `encode_first_stage`, `get_first_stage_encoding`, `decode_first_stage`.

Inference only: no losses, no EMA, no sampling loops (k-diffusion samples).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .autoencoder import AutoencoderKL, DiagonalGaussianDistribution
from .clip_text import TextEncoder
from .unet import UNetModel

Cond = Union[torch.Tensor, Sequence[torch.Tensor], dict]


@dataclass
class DiffusionConfig:
    linear_start: float = 0.00085  # beta_1 of the "linear" schedule (linear in sqrt(beta))
    linear_end: float = 0.012  # beta_T
    timesteps: int = 1000  # T, the number of discrete diffusion steps
    beta_schedule: str = "linear"  # only "linear" is used by SD v1/v2
    parameterization: str = "eps"  # what the UNet predicts: "eps" (noise) or "v" (Salimans & Ho 2022)
    scale_factor: float = 0.18215  # latent = scale_factor * VAE sample (unit variance for the UNet)
    conditioning_key: str = "crossattn"  # crossattn | concat | hybrid (both) | hybrid-adm (x4: + class)
    image_size: int = 64  # training latent size (informative)
    channels: int = 4  # latent channels

    @classmethod
    def from_params(cls, params: dict) -> "DiffusionConfig":
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in params.items() if k in names})
        # the original LatentDiffusion's defaults where a yaml leaves them out (every SD yaml sets
        # both; the older latent-diffusion ones, such as LDSR's, rely on them)
        cfg.scale_factor = params.get("scale_factor", 1.0)
        if params.get("conditioning_key") is None:
            cfg.conditioning_key = "concat" if params.get("concat_mode", True) else "crossattn"
        if cfg.beta_schedule != "linear":
            raise ValueError(f"beta_schedule={cfg.beta_schedule!r} is not supported (SD uses 'linear')")
        if cfg.parameterization not in ("eps", "v"):
            raise ValueError(f"parameterization={cfg.parameterization!r}: use 'eps' or 'v'")
        if cfg.conditioning_key not in ("crossattn", "concat", "hybrid", "hybrid-adm"):
            raise ValueError(f"conditioning_key={cfg.conditioning_key!r} is not supported")
        return cfg


def make_schedule(linear_start: float, linear_end: float, timesteps: int = 1000,
                  posterior: bool = True) -> dict:
    """The DDPM buffers in float64, computed as the original register_schedule (Ho et al. 2020, eq. 4-7)."""
    betas = np.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    s = {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
    }
    if posterior:  # q(x_{t-1} | x_t, x_0), eq. 6-7
        variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        s["posterior_variance"] = variance
        s["posterior_log_variance_clipped"] = np.log(np.maximum(variance, 1e-20))
        s["posterior_mean_coef1"] = betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        s["posterior_mean_coef2"] = (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod)
    return s


def _register_schedule(module: nn.Module, schedule: dict, device=None) -> None:
    for name, values in schedule.items():
        module.register_buffer(name, torch.tensor(values, dtype=torch.float32, device=device))


class DiffusionWrapper(nn.Module):
    """Routes the conditioning to the UNet by conditioning_key; keys `model.diffusion_model.*`."""

    def __init__(self, diffusion_model: UNetModel, conditioning_key: str):
        super().__init__()
        self.diffusion_model = diffusion_model
        self.conditioning_key = conditioning_key

    def forward(self, x: torch.Tensor, t: torch.Tensor, c_concat: Optional[list] = None,
                c_crossattn: Optional[list] = None, c_adm: Optional[torch.Tensor] = None) -> torch.Tensor:
        key = self.conditioning_key
        if key in ("concat", "hybrid", "hybrid-adm"):
            if not c_concat:
                raise ValueError(f"this model ({key} conditioning) needs c_concat: the image conditioning "
                                 "(masked-image latent + mask, depth, or low-res image)")
            x = torch.cat([x, *c_concat], dim=1)
        context = torch.cat(list(c_crossattn), dim=1) if c_crossattn and key != "concat" else None
        if key == "hybrid-adm" and c_adm is None:
            raise ValueError("this model (hybrid-adm, x4 upscaler) needs c_adm: the noise level [B]")
        return self.diffusion_model(x, t, context=context, y=c_adm if key == "hybrid-adm" else None)


class LatentDiffusion(nn.Module):
    """txt2img / img2img model; the subclasses below only add what their checkpoints hold."""

    def __init__(self, config: DiffusionConfig, unet: UNetModel, first_stage_model: AutoencoderKL,
                 cond_stage_model: TextEncoder):
        super().__init__()
        self.config = config
        self.model = DiffusionWrapper(unet, config.conditioning_key)
        self.register_schedule()
        self.first_stage_model = first_stage_model
        self.cond_stage_model = cond_stage_model
        self.parameterization = config.parameterization
        self.scale_factor = config.scale_factor
        self.conditioning_key = config.conditioning_key
        self.num_timesteps = config.timesteps
        self.linear_start, self.linear_end = config.linear_start, config.linear_end
        self.channels = config.channels

    def register_schedule(self, device=None) -> None:
        """(Re)compute the 12 schedule buffers from the config, e.g. for a checkpoint without them."""
        c = self.config
        _register_schedule(self, make_schedule(c.linear_start, c.linear_end, c.timesteps), device)

    @property
    def device(self) -> torch.device:
        """Where the UNet's weights are (the original is a Lightning module with this property)."""
        return self.model.diffusion_model.time_embed[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The UNet's weight dtype (the VAE's may differ: --no-half-vae)."""
        return self.model.diffusion_model.time_embed[0].weight.dtype

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell along each side: 2 ** (len(ch_mult) - 1) (8 for SD, 4 for x4)."""
        return self.first_stage_model.downsampling_factor

    @property
    def latent_channels(self) -> int:
        return self.first_stage_model.config.embed_dim

    def apply_model(self, x_noisy: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        """UNet output (eps or v) for x_noisy [B, 4, h, w] at timesteps t [B].

        cond: the text context [B, 77k, C] (or a list of them), or a dict with c_concat / c_crossattn
        lists and, for x4, c_adm (the noise level [B]).
        """
        if not isinstance(cond, dict):
            cond = list(cond) if isinstance(cond, (list, tuple)) else [cond]
            cond = {"c_concat" if self.conditioning_key == "concat" else "c_crossattn": cond}
        return self.model(x_noisy, t, **cond)

    def get_learned_conditioning(self, prompts: Union[Sequence[str], torch.Tensor]) -> torch.Tensor:
        """prompts -> text context [B, 77, C] (no emphasis or chunking: see modules.conditioning);
        class labels -> [B, 1, C] (cin256); a tensor (LDSR's low-res image) goes through unchanged."""
        if isinstance(prompts, torch.Tensor):
            return self.cond_stage_model.encode(prompts)
        return self.cond_stage_model.encode(list(prompts))

    def encode_first_stage(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """image [B, 3, H, W] in [-1, 1] -> posterior over unscaled latents."""
        return self.first_stage_model.encode(x.to(self._vae_dtype()))

    def get_first_stage_encoding(self, encoder_posterior: Union[DiagonalGaussianDistribution, torch.Tensor],
                                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Posterior sample (or a given latent) times scale_factor: what the UNet works on."""
        if isinstance(encoder_posterior, DiagonalGaussianDistribution):
            z = encoder_posterior.sample(generator)
        elif isinstance(encoder_posterior, torch.Tensor):
            z = encoder_posterior
        else:
            raise ValueError(f"expected a posterior or a tensor, got {type(encoder_posterior).__name__}")
        return self.scale_factor * z

    def decode_first_stage(self, z: torch.Tensor, force_not_quantize: bool = False) -> torch.Tensor:
        """scaled latent [B, 4, h, w] -> image [B, 3, h*f, w*f], about [-1, 1]. A VQ first stage
        (VQModelInterface) snaps the latent to its codebook first unless force_not_quantize."""
        z = (z / self.scale_factor).to(self._vae_dtype())
        if force_not_quantize:
            return self.first_stage_model.decode(z, force_not_quantize=True)
        return self.first_stage_model.decode(z)

    def _vae_dtype(self) -> torch.dtype:
        return self.first_stage_model.post_quant_conv.weight.dtype

    def networks(self) -> list:
        """The submodules that hold weights (a dtype change applies to these, not to the schedules)."""
        names = ("model", "first_stage_model", "cond_stage_model", "depth_model")
        return [getattr(self, n) for n in names if isinstance(getattr(self, n, None), nn.Module)]


class LatentInpaintDiffusion(LatentDiffusion):
    """9-channel UNet: c_concat = [mask [B, 1, h, w], masked-image latent [B, 4, h, w]] (mask first)."""


class LatentDepth2ImageDiffusion(LatentDiffusion):
    """5-channel UNet: c_concat = [depth [B, 1, h, w] in [-1, 1]], from MiDaS (`depth_model`)."""

    def __init__(self, config: DiffusionConfig, unet: UNetModel, first_stage_model: AutoencoderKL,
                 cond_stage_model: TextEncoder, depth_model: Optional[nn.Module] = None):
        super().__init__(config, unet, first_stage_model, cond_stage_model)
        if depth_model is not None:
            self.depth_model = depth_model  # keys depth_model.model.*


class ImageConcatWithNoiseAugmentation(nn.Module):
    """x4 upscaler's low-res conditioning: the RGB image noised to a chosen level (8 buffers)."""

    def __init__(self, linear_start: float = 1e-4, linear_end: float = 2e-2, timesteps: int = 1000,
                 max_noise_level: int = 1000):
        super().__init__()
        self.max_noise_level = max_noise_level
        self.num_timesteps = timesteps
        self.linear_start, self.linear_end = linear_start, linear_end
        self.register_schedule()

    def register_schedule(self, device=None) -> None:
        schedule = make_schedule(self.linear_start, self.linear_end, self.num_timesteps, posterior=False)
        _register_schedule(self, schedule, device)

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Forward diffusion to step t [B]: sqrt(a_t) x + sqrt(1 - a_t) noise (Ho et al. 2020, eq. 4)."""
        if noise is None:
            noise = torch.randn(x_start.shape, generator=generator, dtype=x_start.dtype,
                                device=x_start.device if generator is None else generator.device).to(x_start.device)
        t = t.to(self.sqrt_alphas_cumprod.device).long()
        a = self.sqrt_alphas_cumprod[t].to(x_start)[:, None, None, None]
        b = self.sqrt_one_minus_alphas_cumprod[t].to(x_start)[:, None, None, None]
        return a * x_start + b * noise

    def forward(self, x: torch.Tensor, noise_level: Union[int, torch.Tensor, None] = None,
                generator: Optional[torch.Generator] = None) -> tuple:
        """low-res image [B, 3, h, w] in [-1, 1] -> (noised image for c_concat, noise_level [B] for c_adm)."""
        if noise_level is None:
            noise_level = torch.randint(0, self.max_noise_level, (x.shape[0],), generator=generator)
        elif not isinstance(noise_level, torch.Tensor):
            noise_level = torch.full((x.shape[0],), int(noise_level))
        if int(noise_level.max()) >= self.max_noise_level or int(noise_level.min()) < 0:
            raise ValueError(f"noise level must be in [0, {self.max_noise_level - 1}]")
        noise_level = noise_level.long().to(x.device)
        return self.q_sample(x, noise_level, generator=generator), noise_level


class LatentUpscaleDiffusion(LatentDiffusion):
    """x4 upscaler: c_concat = [noised low-res RGB], c_adm = its noise level; `low_scale_model`."""

    def __init__(self, config: DiffusionConfig, unet: UNetModel, first_stage_model: AutoencoderKL,
                 cond_stage_model: TextEncoder, low_scale_model: ImageConcatWithNoiseAugmentation):
        super().__init__(config, unet, first_stage_model, cond_stage_model)
        self.low_scale_model = low_scale_model

    def low_scale_conditioning(self, x_low: torch.Tensor, noise_level: Union[int, torch.Tensor] = 20,
                               generator: Optional[torch.Generator] = None) -> dict:
        """low-res image [B, 3, h, w] in [-1, 1] -> {"c_concat": [...], "c_adm": noise_level} parts of cond."""
        x_noisy, level = self.low_scale_model(x_low, noise_level, generator)
        return {"c_concat": [x_noisy], "c_adm": level}
