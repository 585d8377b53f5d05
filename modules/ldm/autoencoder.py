"""The KL-regularised autoencoder of latent diffusion (`ldm.models.autoencoder.AutoencoderKL`).

Rombach et al. 2022, sec. 3.1: image [B, 3, H, W] in [-1, 1] <-> latent [B, z, H/f, W/f] with
f = 2 ** (len(ch_mult) - 1) (8 for SD, 4 for the x4 upscaler). Attribute names are the checkpoint
keys under `first_stage_model.`: encoder.down.N.block.M, encoder.mid.attn_1, quant_conv, ...
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AutoencoderConfig:
    embed_dim: int = 4  # latent channels seen by the UNet
    z_channels: int = 4  # channels at the encoder output / decoder input (before quant convs)
    double_z: bool = True  # the encoder outputs mean and log-variance (2 * z_channels)
    in_channels: int = 3  # image channels in
    out_ch: int = 3  # image channels out
    ch: int = 128  # width of the first level
    ch_mult: Sequence[int] = (1, 2, 4, 4)  # one entry per level; len - 1 downsamplings
    num_res_blocks: int = 2  # ResnetBlocks per level in the encoder (+1 in the decoder)
    attn_resolutions: Sequence[int] = ()  # resolutions with self-attention in the levels (none for SD)
    resolution: int = 256  # training resolution, only used to place attn_resolutions
    dropout: float = 0.0
    use_quant_conv: bool = True  # 1x1 quant_conv / post_quant_conv around the latent (SD3's VAE has none)
    attn_type: str = "vanilla"  # "none": no attention at all, not even in the mid block (vq-f4-noattn)

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_params(cls, params: dict) -> "AutoencoderConfig":
        """Build from a yaml `first_stage_config.params` dict (embed_dim + ddconfig)."""
        dd = dict(params.get("ddconfig") or {})
        attn_type = dd.get("attn_type", "vanilla")
        if attn_type not in ("vanilla", "vanilla-xformers", "none"):
            raise ValueError(f"VAE attn_type={attn_type!r} is not supported (use 'vanilla' or 'none')")
        dd["attn_type"] = "none" if attn_type == "none" else "vanilla"  # xformers is a kernel, same weights
        names = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in dd.items() if k in names}, embed_dim=params.get("embed_dim", 4))
        cfg.ch_mult, cfg.attn_resolutions = tuple(cfg.ch_mult), tuple(cfg.attn_resolutions)
        return cfg


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _cpu_layout(x: torch.Tensor) -> torch.Tensor:
    """On the CPU the autoencoder runs on channels-last maps: oneDNN then convolves the large, few-channel
    maps without reordering them to its blocked layout and back at every layer. Measured (SD VAE, fp32,
    one thread, a 512x512 image): decode 19.1-19.7 s -> 16.7-17.4 s, encode 7.7-8.0 s -> 6.8-7.4 s.
    The weights keep their layout; results differ from NCHW in rounding only."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" and x.dim() == 4 else x


def Normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, with 1x1 convs as projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        h_ = self.norm(x)
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (self.q(h_), self.k(h_), self.v(h_)))
        out = F.scaled_dot_product_attention(q, k, v)  # [B, 1, HW, C]
        # keep the conv input in the layout of x (NCHW, or channels-last on the CPU: see AutoencoderKL)
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w).contiguous(memory_format=_layout(x)))


def make_attn(channels: int, cfg: AutoencoderConfig) -> nn.Module:
    """The original make_attn: attn_type "none" is an Identity (no keys)."""
    return nn.Identity() if cfg.attn_type == "none" else AttnBlock(channels)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric padding, as the original


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: `block` (ResnetBlocks), `attn`, optional `downsample`/`upsample`."""

    def __init__(self, blocks: list, attns: list):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)


class Mid(nn.Module):
    def __init__(self, channels: int, cfg: AutoencoderConfig):
        super().__init__()
        dropout = cfg.dropout
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = make_attn(channels, cfg)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _run_level(level: Level, h: torch.Tensor) -> torch.Tensor:
    for i, block in enumerate(level.block):
        h = block(h)
        if len(level.attn) > 0:
            h = level.attn[i](h)
    return h


class Encoder(nn.Module):
    """image [B, 3, H, W] -> moments [B, 2*z, H/f, W/f]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        res, in_mult = cfg.resolution, (1,) + tuple(cfg.ch_mult)
        self.down = nn.ModuleList()
        for i, mult in enumerate(cfg.ch_mult):
            block_in, block_out = cfg.ch * in_mult[i], cfg.ch * mult
            blocks = [ResnetBlock(block_in if j == 0 else block_out, block_out, cfg.dropout)
                      for j in range(cfg.num_res_blocks)]
            attns = [make_attn(block_out, cfg) for _ in blocks] if res in cfg.attn_resolutions else []
            level = Level(blocks, attns)
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(block_out)
                res //= 2
            self.down.append(level)
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.mid = Mid(block_in, cfg)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = _run_level(level, h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """latent [B, z, h, w] -> image [B, 3, h*f, w*f]."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        levels = len(cfg.ch_mult)
        block_in = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (levels - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = Mid(block_in, cfg)
        up = []
        for i in reversed(range(levels)):
            block_out = cfg.ch * cfg.ch_mult[i]
            blocks = [ResnetBlock(block_in if j == 0 else block_out, block_out, cfg.dropout)
                      for j in range(cfg.num_res_blocks + 1)]
            attns = [make_attn(block_out, cfg) for _ in blocks] if res in cfg.attn_resolutions else []
            level = Level(blocks, attns)
            block_in = block_out
            if i != 0:
                level.upsample = Upsample(block_out)
                res *= 2
            up.insert(0, level)
        self.up = nn.ModuleList(up)  # up[0] is the full-resolution level, run last
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = _run_level(level, h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DiagonalGaussianDistribution:
    """The encoder's posterior q(z|x) = N(mean, exp(logvar)); moments [B, 2*C, h, w]."""

    def __init__(self, parameters: torch.Tensor):
        self.parameters = parameters
        self.mean, logvar = torch.chunk(parameters, 2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype,
                            device=self.mean.device if generator is None else generator.device)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over C, h, w."""
        return 0.5 * torch.sum(self.mean ** 2 + self.var - 1.0 - self.logvar, dim=[1, 2, 3])


class AutoencoderKL(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = cfg = config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.use_quant_conv:
            self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
            self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @property
    def downsampling_factor(self) -> int:
        return self.config.downsampling_factor

    def encode(self, x: torch.Tensor) -> DiagonalGaussianDistribution:
        """image [B, 3, H, W] in [-1, 1] -> posterior over latents [B, embed_dim, H/f, W/f]."""
        moments = self.encoder(_cpu_layout(x))
        if self.config.use_quant_conv:
            moments = self.quant_conv(moments)
        return DiagonalGaussianDistribution(moments.contiguous())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latent [B, embed_dim, h, w] (unscaled) -> image [B, 3, h*f, w*f], about [-1, 1]."""
        z = _cpu_layout(z)
        return self.decoder(self.post_quant_conv(z) if self.config.use_quant_conv else z).contiguous()

    def forward(self, x: torch.Tensor, sample_posterior: bool = True) -> torch.Tensor:
        posterior = self.encode(x)
        return self.decode(posterior.sample() if sample_posterior else posterior.mode())
