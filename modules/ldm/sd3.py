"""The SD3 / SD3.5 model: MMDiT + 16-channel VAE + text encoders under their checkpoint names, with
the interface the engine uses for every model (as LatentDiffusion's, see latent_diffusion.py):

    apply_model(x, t, cond, skip_layers=())  network output (the flow velocity v) at model time
                                              t = 1000 * sigma; cond = get_learned_conditioning's dict
    get_learned_conditioning(prompts)        {"crossattn": context [B, L, 4096], "vector": pooled [B, 2048]}
    encode_first_stage(x) / get_first_stage_encoding(posterior) / decode_first_stage(z)
                                              with the SD3 latent scale 1.5305 and shift 0.0609
    parameterization = "flow"; family (modules.models.family) says the rest (schedule, defaults).

Keys: model.diffusion_model.* (MMDiT), first_stage_model.* (AutoencoderKL without quant convs),
text_encoders.{clip_l,clip_g,t5xxl}.transformer.* (each optional). T5 runs only with a tokenizer
(`text_encoders.t5xxl.tokenizer`, a modules.ldm.t5_tokenizer.T5Tokenizer, set by the file loader);
without one its part of the context is zero.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from .autoencoder import AutoencoderConfig, AutoencoderKL, DiagonalGaussianDistribution
from .clip_text import TextConfig
from .mmdit import MMDiT, MMDiTConfig
from .sd3_text import CLIP_G_DEFAULTS, CLIP_L_DEFAULTS, T5XXL, SD3TextEncoders, clip_g, clip_l
from .t5 import T5Config

VAE_PREFIX = "first_stage_model."
ENCODER_PREFIX = {name: f"text_encoders.{name}.transformer." for name in ("clip_l", "clip_g", "t5xxl")}
SD3_VAE = AutoencoderConfig(embed_dim=16, z_channels=16, ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2,
                            use_quant_conv=False)


@dataclass
class SD3Config:
    mmdit: MMDiTConfig
    vae: AutoencoderConfig
    clip_l: Optional[TextConfig] = None  # None: not part of this model (yet)
    clip_g: Optional[TextConfig] = None
    t5xxl: Optional[T5Config] = None

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, tuple]) -> "SD3Config":
        return cls(MMDiTConfig.from_shapes(shapes), vae_config_from_shapes(shapes),
                   clip_config_from_shapes(shapes, ENCODER_PREFIX["clip_l"], CLIP_L_DEFAULTS),
                   clip_config_from_shapes(shapes, ENCODER_PREFIX["clip_g"], CLIP_G_DEFAULTS),
                   T5Config.from_shapes(shapes, ENCODER_PREFIX["t5xxl"])
                   if ENCODER_PREFIX["t5xxl"] + "encoder.final_layer_norm.weight" in shapes else None)


def _count(shapes: Mapping[str, tuple], pattern: str) -> int:
    return len({m.group(1) for k in shapes if (m := re.match(pattern, k))})


def vae_config_from_shapes(shapes: Mapping[str, tuple], prefix: str = VAE_PREFIX) -> AutoencoderConfig:
    """The LDM AutoencoderKL config from its weights (SD3's: ch 128, mult 1,2,4,4, z 16)."""
    if prefix + "decoder.conv_in.weight" not in shapes:
        raise ValueError(f"the checkpoint has no VAE ({prefix}decoder.conv_in.weight is missing)")
    p = re.escape(prefix)
    ch = shapes[prefix + "encoder.conv_in.weight"][0]
    levels = _count(shapes, p + r"encoder\.down\.(\d+)\.")
    mult = tuple(shapes[f"{prefix}encoder.down.{i}.block.0.conv2.weight"][0] // ch for i in range(levels))
    z = shapes[prefix + "decoder.conv_in.weight"][1]
    return AutoencoderConfig(embed_dim=z, z_channels=z, ch=ch, ch_mult=mult,
                             num_res_blocks=_count(shapes, p + r"encoder\.down\.0\.block\.(\d+)\."),
                             double_z=shapes[prefix + "encoder.conv_out.weight"][0] == 2 * z,
                             use_quant_conv=prefix + "quant_conv.weight" in shapes)


def clip_config_from_shapes(shapes: Mapping[str, tuple], prefix: str, defaults: dict) -> Optional[TextConfig]:
    """A CLIP text config from its weights (heads = width / 64, as CLIP-L and bigG); None if absent."""
    key = prefix + "text_model.embeddings.token_embedding.weight"
    if key not in shapes:
        return None
    vocab, width = shapes[key]
    projection = shapes.get(prefix + "text_projection.weight")
    return TextConfig(**{**defaults, "width": width, "vocab_size": vocab, "heads": max(1, width // 64),
                         "layers": _count(shapes, re.escape(prefix) + r"text_model\.encoder\.layers\.(\d+)\."),
                         "max_length": shapes[prefix + "text_model.embeddings.position_embedding.weight"][0],
                         "embed_dim": projection[0] if projection and defaults.get("embed_dim") else None})


class DiffusionWrapper(nn.Module):
    """Only there for the key prefix `model.diffusion_model.`."""

    def __init__(self, diffusion_model: MMDiT):
        super().__init__()
        self.diffusion_model = diffusion_model


class SD3(nn.Module):
    parameterization = "flow"  # the network predicts the velocity v = noise - x0 (rectified flow)

    def __init__(self, config: SD3Config, family=None):
        super().__init__()
        self.config = config
        self.family = family  # modules.models.family.ModelFamily, set by the loader
        self.model = DiffusionWrapper(MMDiT(config.mmdit))
        self.first_stage_model = AutoencoderKL(config.vae)
        self.text_encoders = SD3TextEncoders(
            config.mmdit.context_in_features,
            clip_l(config.clip_l) if config.clip_l else None,
            clip_g(config.clip_g) if config.clip_g else None,
            T5XXL(config.t5xxl) if config.t5xxl else None)
        self.scale_factor, self.shift_factor = 1.5305, 0.0609
        self.notes: list[str] = []  # what the loader wants the user to know (T5 missing, ...)
        self.sources: dict[str, str] = {}  # file each part came from ("" = the checkpoint), set by the loader

    @property
    def cond_stage_model(self) -> SD3TextEncoders:
        return self.text_encoders

    @property
    def device(self) -> torch.device:
        return self.model.diffusion_model.x_embedder.proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.diffusion_model.x_embedder.proj.weight.dtype

    @property
    def vae_scale_factor(self) -> int:
        return self.first_stage_model.downsampling_factor

    @property
    def latent_channels(self) -> int:
        return self.config.mmdit.in_channels

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: dict,
                    skip_layers: Iterable[int] = ()) -> torch.Tensor:
        """The velocity [B, 16, h, w] for latents x at model times t [B] (1000 * sigma).

        cond: {"crossattn": [B, L, 4096], "vector": [B, 2048]}; skip_layers: joint blocks to leave out."""
        if not isinstance(cond, dict) or "crossattn" not in cond or "vector" not in cond:
            raise ValueError("SD3 conditioning is a dict with 'crossattn' (context) and 'vector' (pooled), "
                             "as get_learned_conditioning returns it")
        context = cond["crossattn"]
        if isinstance(context, (list, tuple)):
            context = torch.cat(list(context), dim=1)
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t
        out = self.model.diffusion_model(x, t.to(x.device), cond["vector"].to(x.device), context.to(x.device),
                                         skip_layers)
        return out.to(x.dtype)

    @torch.no_grad()
    def get_learned_conditioning(self, prompts: Sequence[str]) -> dict:
        """prompts -> {"crossattn": context, "vector": pooled} (see modules/ldm/sd3_text.py)."""
        context, pooled = self.text_encoders(list(prompts))  # --medvram: modules.models.offload moves them
        return {"crossattn": context, "vector": pooled}

    def encode_first_stage(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """image [B, 3, H, W] in [-1, 1] -> posterior over VAE latents (unscaled, unshifted)."""
        return self.first_stage_model.encode(x.to(self._vae_dtype()))

    def get_first_stage_encoding(self, encoder_posterior, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Posterior sample (as SAI's reference) or a given VAE latent -> model latent (z - 0.0609) * 1.5305."""
        if isinstance(encoder_posterior, DiagonalGaussianDistribution):
            z = encoder_posterior.sample(generator)
        elif isinstance(encoder_posterior, torch.Tensor):
            z = encoder_posterior
        else:
            raise ValueError(f"expected a posterior or a tensor, got {type(encoder_posterior).__name__}")
        return (z - self.shift_factor) * self.scale_factor

    def decode_first_stage(self, z: torch.Tensor) -> torch.Tensor:
        """model latent [B, 16, h, w] -> image [B, 3, 8h, 8w], about [-1, 1]."""
        return self.first_stage_model.decode((z / self.scale_factor + self.shift_factor).to(self._vae_dtype()))

    def _vae_dtype(self) -> torch.dtype:
        return self.first_stage_model.decoder.conv_in.weight.dtype

    def networks(self) -> list:
        return [self.model, self.first_stage_model, self.text_encoders]


def build_sd3(config: SD3Config, device="cpu", dtype: torch.dtype = torch.float32, family=None) -> SD3:
    """The model for `config`, random-initialised (device "meta": nothing allocated), in eval mode."""
    with torch.device(device):
        model = SD3(config, family)
    model.to(dtype)
    return model.eval().requires_grad_(False)
