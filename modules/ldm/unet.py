"""The LDM denoising UNet (`ldm.modules.diffusionmodules.openaimodel.UNetModel`).

Ho et al. 2020 / Dhariwal & Nichol 2021 UNet with the spatial transformers of Rombach et al. 2022.
Attribute names are the checkpoint keys: `time_embed`, `label_emb`, `input_blocks.N.M`,
`middle_block`, `output_blocks.N.M`, `out` (under `model.diffusion_model.` in a checkpoint).

Only the options the SD v1/v2/x4 configs use are implemented; the others raise ValueError.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionFn, CrossAttention, SpatialTransformer, sdpa_attention
from .attention_block import AttentionBlock
from .clip_text import embedding
from .conv import Conv2d


@dataclass
class UNetConfig:
    in_channels: int = 4  # 4 txt2img, 9 inpainting (+4 masked latent +1 mask), 5 depth, 7 x4 (+3 low-res RGB)
    out_channels: int = 4  # latent channels predicted (eps or v)
    model_channels: int = 320  # width of the first level; level i has model_channels * channel_mult[i]
    num_res_blocks: Union[int, Sequence[int]] = 2  # ResBlocks per level on the way down (+1 on the way up)
    attention_resolutions: Sequence[int] = (4, 2, 1)  # downsampling factors (1, 2, 4, ...) that get a transformer
    channel_mult: Sequence[int] = (1, 2, 4, 4)  # one entry per level
    num_heads: int = -1  # attention heads (v1, x4) ...
    num_head_channels: int = -1  # ... or channels per head (v2: 64), heads = ch // num_head_channels
    transformer_depth: Union[int, Sequence[int]] = 1  # transformer blocks per SpatialTransformer (per level)
    context_dim: Optional[int] = 768  # text width: 768 CLIP ViT-L (v1), 1024 OpenCLIP ViT-H (v2)
    use_linear_in_transformer: bool = False  # v2: Linear proj_in/proj_out; v1: 1x1 conv
    num_classes: Optional[int] = None  # x4: noise-level classes -> label_emb, the `y` argument
    disable_self_attentions: Optional[Sequence[bool]] = None  # per level: attn1 attends to context (x4)
    disable_middle_self_attn: bool = False  # same for the middle block
    legacy: bool = False  # original quirk for head size; same result for every official config
    use_spatial_transformer: bool = True  # False (pre-SD LDMs, e.g. LDSR): plain self-attention blocks
    # accepted from the yaml, no effect here: checkpointing is a training trick and the
    # dtype comes from the weights (use_fp16 in the v2 yaml is ignored by every inference UI)
    use_checkpoint: bool = False
    use_fp16: bool = False
    image_size: int = 32
    dropout: float = 0.0
    conv_resample: bool = True

    @classmethod
    def from_params(cls, params: dict) -> "UNetConfig":
        """Build from a yaml `unet_config.params` dict; training-only keys are ignored."""
        _check_supported(params)
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in params.items() if k in names})
        cfg.use_spatial_transformer = bool(params.get("use_spatial_transformer", False))  # the original default
        cfg.channel_mult = tuple(cfg.channel_mult)
        cfg.attention_resolutions = tuple(cfg.attention_resolutions)
        return cfg


_UNSUPPORTED = {  # option: value the official configs use (anything else is another architecture)
    "use_scale_shift_norm": False, "resblock_updown": False,
    "dims": 2, "n_embed": None, "use_new_attention_order": False, "num_attention_blocks": None,
}


def _check_supported(params: dict) -> None:
    for key, expected in _UNSUPPORTED.items():
        if key in params and params[key] != expected and not (key == "dims" and params[key] is None):
            raise ValueError(f"UNet option {key}={params[key]!r} is not supported (SD v1/v2 use {expected!r})")
    if isinstance(params.get("num_classes"), str):
        raise ValueError(f"UNet num_classes={params['num_classes']!r} (SDXL-style 'sequential' label embedding) "
                         "is not supported yet")
    ctx = params.get("context_dim")
    if ctx is not None and not isinstance(ctx, int):
        raise ValueError(f"UNet context_dim={ctx!r}: only one context width is supported")


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B] -> [B, dim], cos first (Vaswani et al. 2017, as the LDM code)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (fp16 statistics overflow), as the original `normalization`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


def normalization(channels: int) -> nn.GroupNorm:
    return GroupNorm32(32, channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the timestep embedding added in between."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(normalization(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        Conv2d(out_channels, out_channels, 3, padding=1))
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]  # [B, C, 1, 1]
        return self.skip_connection(x) + self.out_layers(h)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential whose children get the timestep embedding or the context, as they need."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


def _per_level(value: Union[int, Sequence[int]], levels: int) -> list:
    return [value] * levels if isinstance(value, int) else list(value)


class UNetModel(nn.Module):
    """forward(x [B, in_channels, h, w], timesteps [B], context [B, T, context_dim], y [B]) -> [B, out, h, w]."""

    def __init__(self, config: UNetConfig, attention: AttentionFn = sdpa_attention):
        super().__init__()
        self.config = cfg = config
        levels = len(cfg.channel_mult)
        num_res_blocks = _per_level(cfg.num_res_blocks, levels)
        depth = _per_level(cfg.transformer_depth, levels)
        no_self_attn = list(cfg.disable_self_attentions or [False] * levels)
        if (cfg.num_heads == -1) == (cfg.num_head_channels == -1):
            raise ValueError("UNet config needs exactly one of num_heads and num_head_channels")
        time_embed_dim = cfg.model_channels * 4
        self.num_classes = cfg.num_classes

        def transformer(ch: int, level_depth: int, disable_self_attn: bool) -> nn.Module:
            if not cfg.use_spatial_transformer:
                return AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels)
            if cfg.num_head_channels == -1:
                heads, dim_head = cfg.num_heads, ch // cfg.num_heads
            else:
                heads, dim_head = ch // cfg.num_head_channels, cfg.num_head_channels
            if cfg.legacy:
                dim_head = ch // heads
            return SpatialTransformer(ch, heads, dim_head, level_depth, cfg.context_dim, disable_self_attn,
                                      cfg.use_linear_in_transformer, attention)

        self.time_embed = nn.Sequential(nn.Linear(cfg.model_channels, time_embed_dim), nn.SiLU(),
                                        nn.Linear(time_embed_dim, time_embed_dim))
        if cfg.num_classes is not None:
            self.label_emb = embedding(cfg.num_classes, time_embed_dim)

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(Conv2d(cfg.in_channels, cfg.model_channels, 3, padding=1))])
        chans = [cfg.model_channels]  # skip-connection widths, consumed by the output blocks
        ch, ds = cfg.model_channels, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(num_res_blocks[level]):
                layers = [ResBlock(ch, time_embed_dim, mult * cfg.model_channels, cfg.dropout)]
                ch = mult * cfg.model_channels
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch, depth[level], no_self_attn[level]))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, time_embed_dim, ch, cfg.dropout),
            transformer(ch, depth[-1], cfg.disable_middle_self_attn),
            ResBlock(ch, time_embed_dim, ch, cfg.dropout))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(num_res_blocks[level] + 1):
                layers = [ResBlock(ch + chans.pop(), time_embed_dim, cfg.model_channels * mult, cfg.dropout)]
                ch = cfg.model_channels * mult
                if ds in cfg.attention_resolutions:
                    layers.append(transformer(ch, depth[level], no_self_attn[level]))
                if level and i == num_res_blocks[level]:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 Conv2d(cfg.model_channels, cfg.out_channels, 3, padding=1))

    def set_attention(self, attention: AttentionFn) -> None:
        """Route every attention layer of this model through `attention` (see attention.AttentionFn)."""
        for module in self.modules():
            if isinstance(module, CrossAttention):
                module.attention = attention

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: Optional[torch.Tensor] = None,
                y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("UNet: pass y (the class / noise level) exactly when the model has num_classes")
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(dtype))  # [B, 4*mc]
        if y is not None:
            emb = emb + self.label_emb(y.long())
        if context is not None:
            context = context.to(dtype)
        h = x.to(dtype)
        hs = []
        for module in self.input_blocks:
            h = module(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for module in self.output_blocks:
            skip = hs.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                # sizes not divisible by 2 ** (levels - 1) (e.g. a 520 px image): A1111 resizes the
                # upsampled map to the skip connection's size, and so do we (same images)
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = module(torch.cat([h, skip], dim=1), emb, context)
        return self.out(h).to(x.dtype)
