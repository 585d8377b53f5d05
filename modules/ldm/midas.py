"""MiDaS v3 DPT-Hybrid (Ranftl et al. 2021, "Vision Transformers for Dense Prediction"): the depth
estimator of SD 2 depth2img, stored in its checkpoint as `depth_model.model.*` (368 tensors).

    image [B, 3, H, W] (H, W multiples of 32, normalised with mean = std = 0.5)
      -> ResNet-50 stem (timm ResNetV2, stages /4, /8, /16) -> 1x1 proj -> ViT-B tokens (+ cls)
      -> reassemble: stage 0 and 1 maps (layer1, layer2), ViT blocks 8 and 11 (layer3, layer4 /32)
      -> fusion (refinenet4 .. refinenet1, each x2 upsampling) -> head (x2) -> ReLU -> [B, H, W]

The output is relative inverse depth (larger = nearer). The backbone is timm's
`vit_base_r50_s16_384` built from its parts, so `pretrained.model.*` are timm's own parameter names
(the ones the checkpoint holds); the forward pass is MiDaS's `forward_flex`: position embeddings
resized bilinearly to the input grid, and the two ResNet stages and two ViT blocks read as features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import GroupNormAct, HybridEmbed, StdConv2dSame
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer
from torch import nn


@dataclass
class MidasConfig:
    """DPT-Hybrid sizes; the defaults are the checkpoint's (`model_type: dpt_hybrid`)."""

    stem_chs: int = 64  # ResNet stem conv width
    layers: tuple = (3, 4, 9)  # bottleneck blocks per ResNet stage (R50 without its 4th stage)
    channels: tuple = (256, 512, 1024)  # ResNet stage outputs (/4, /8, /16)
    norm_groups: int = 32  # GroupNorm groups in the ResNet
    embed_dim: int = 768  # ViT width
    depth: int = 12  # ViT blocks
    num_heads: int = 12
    hooks: tuple = (8, 11)  # ViT blocks whose outputs become layer3 / layer4
    img_size: int = 384  # training resolution: pos_embed holds (img_size / 16) ** 2 + 1 entries
    features: int = 256  # fusion (scratch) width
    num_classes: int = 1000  # the unused ImageNet head the checkpoint still carries

    @classmethod
    def from_params(cls, params: dict) -> "MidasConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(params) - names - {"model_type"}
        if unknown:
            raise ValueError(f"unknown MiDaS config keys {sorted(unknown)}; known: {sorted(names)}")
        model_type = params.get("model_type", "dpt_hybrid")
        if model_type != "dpt_hybrid":
            raise ValueError(f"MiDaS model_type {model_type!r} is not supported: only 'dpt_hybrid' (SD 2 depth)")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in names})


def build_vit_hybrid(cfg: MidasConfig) -> VisionTransformer:
    """timm's R50+ViT hybrid (`vit_base_r50_s16_384` at the default sizes), parameters not loaded."""
    backbone = ResNetV2(
        layers=cfg.layers, channels=cfg.channels, stem_chs=cfg.stem_chs, num_classes=0, global_pool="",
        preact=False, stem_type="same", conv_layer=partial(StdConv2dSame, eps=1e-8),
        norm_layer=partial(GroupNormAct, num_groups=cfg.norm_groups))
    # HybridEmbed runs the backbone once on zeros to find its output grid (free on the meta device)
    embed = partial(HybridEmbed, backbone=backbone)
    return VisionTransformer(img_size=cfg.img_size, patch_size=1, embed_dim=cfg.embed_dim, depth=cfg.depth,
                             num_heads=cfg.num_heads, num_classes=cfg.num_classes, embed_layer=embed,
                             )


class ProjectReadout(nn.Module):
    """DPT's "project" readout: each patch token concatenated with the cls token, Linear + GELU."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1 + N, D] -> [B, N, D]
        readout = x[:, :1].expand_as(x[:, 1:])
        return self.project(torch.cat([x[:, 1:], readout], dim=-1))


def _act_postprocess(dim: int, out: int, downsample: bool) -> nn.Sequential:
    """Indices as in the original (0 readout, 1 transpose, 2 unflatten, 3 1x1 conv, 4 stride-2 conv);
    1 and 2 are done in DPTViTHybrid.forward with the actual grid size, so they are placeholders."""
    layers = [ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, out, 1)]
    if downsample:
        layers.append(nn.Conv2d(out, out, 3, stride=2, padding=1))
    return nn.Sequential(*layers)


class DPTViTHybrid(nn.Module):
    """`pretrained`: the backbone (`model`) and the reassemble layers of the ViT features."""

    def __init__(self, cfg: MidasConfig):
        super().__init__()
        self.hooks = cfg.hooks
        self.model = build_vit_hybrid(cfg)
        d = cfg.embed_dim
        self.act_postprocess3 = _act_postprocess(d, d, downsample=False)
        self.act_postprocess4 = _act_postprocess(d, d, downsample=True)

    def _pos_embed(self, gs_h: int, gs_w: int) -> torch.Tensor:
        """The trained grid of position embeddings resized bilinearly to gs_h x gs_w (MiDaS
        _resize_pos_embed; not timm's bicubic resampling)."""
        pos = self.model.pos_embed
        tok, grid = pos[:, :1], pos[0, 1:]
        old = int(math.sqrt(grid.shape[0]))
        grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gs_h, gs_w), mode="bilinear")
        return torch.cat([tok, grid.permute(0, 2, 3, 1).reshape(1, gs_h * gs_w, -1)], dim=1)

    def forward(self, x: torch.Tensor) -> tuple:
        """x [B, 3, H, W] -> (layer1 /4, layer2 /8, layer3 /16, layer4 /32) feature maps."""
        m = self.model
        backbone = m.patch_embed.backbone
        h = backbone.stem(x)
        layer1 = backbone.stages[0](h)
        layer2 = backbone.stages[1](layer1)
        h = backbone.norm(backbone.stages[2](layer2))
        h = m.patch_embed.proj(h)
        gs_h, gs_w = h.shape[-2:]
        tokens = torch.cat([m.cls_token.expand(h.shape[0], -1, -1), h.flatten(2).transpose(1, 2)], dim=1)
        tokens = m.pos_drop(tokens + self._pos_embed(gs_h, gs_w))
        taps = {}
        for i, block in enumerate(m.blocks[: max(self.hooks) + 1]):
            tokens = block(tokens)
            if i in self.hooks:
                taps[i] = tokens
        layer3 = self._reassemble(self.act_postprocess3, taps[self.hooks[0]], gs_h, gs_w)
        layer4 = self._reassemble(self.act_postprocess4, taps[self.hooks[1]], gs_h, gs_w)
        return layer1, layer2, layer3, layer4

    @staticmethod
    def _reassemble(post: nn.Sequential, tokens: torch.Tensor, gs_h: int, gs_w: int) -> torch.Tensor:
        x = post[0](tokens).transpose(1, 2)  # [B, D, N]
        x = x.unflatten(2, (gs_h, gs_w))
        return post[3:](x)


class ResidualConvUnit(nn.Module):
    """relu -> conv3x3 -> relu -> conv3x3, plus the input (MiDaS ResidualConvUnit_custom, no BN)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """(coarser path [+ residual-refined skip]) -> residual unit -> x2 bilinear -> 1x1 conv."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Interpolate(nn.Module):
    """x2 bilinear upsampling inside the head (no parameters; keeps the head's indices)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class Scratch(nn.Module):
    """The decoder: layerN_rn project each feature map to `features`, refinenetN fuse, output_conv."""

    def __init__(self, cfg: MidasConfig):
        super().__init__()
        f = cfg.features
        ins = (cfg.channels[0], cfg.channels[1], cfg.embed_dim, cfg.embed_dim)
        for i, c in enumerate(ins, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(c, f, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self, f"refinenet{i}", FeatureFusionBlock(f))
        self.output_conv = nn.Sequential(
            nn.Conv2d(f, f // 2, 3, padding=1), Interpolate(), nn.Conv2d(f // 2, 32, 3, padding=1),
            nn.ReLU(), nn.Conv2d(32, 1, 1), nn.ReLU())  # final ReLU: depth is non-negative


class DPTDepthModel(nn.Module):
    """image [B, 3, H, W] (H, W multiples of 32) -> relative inverse depth [B, H, W], >= 0."""

    def __init__(self, cfg: MidasConfig):
        super().__init__()
        self.config = cfg
        self.pretrained = DPTViTHybrid(cfg)
        self.scratch = Scratch(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"MiDaS input {tuple(x.shape[-2:])}: height and width must be multiples of 32")
        s = self.scratch
        layer1, layer2, layer3, layer4 = self.pretrained(x)
        path = s.refinenet4(s.layer4_rn(layer4))
        path = s.refinenet3(path, s.layer3_rn(layer3))
        path = s.refinenet2(path, s.layer2_rn(layer2))
        path = s.refinenet1(path, s.layer1_rn(layer1))
        return s.output_conv(path).squeeze(1)


class MiDaSInference(nn.Module):
    """`ldm.modules.midas.api.MiDaSInference`: holds the network as `model` (keys `model.*`)."""

    def __init__(self, cfg: MidasConfig | None = None):
        super().__init__()
        self.model = DPTDepthModel(cfg or MidasConfig())
        self.net_size = self.model.config.img_size  # the short side depth2img resizes images to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared input [B, 3, H, W] -> depth [B, 1, H, W] (bicubic back to the input size, as the
        original; a no-op for DPT, whose head already restores it)."""
        depth = self.model(x).unsqueeze(1)
        if depth.shape[-2:] != x.shape[-2:]:
            depth = F.interpolate(depth, size=x.shape[-2:], mode="bicubic", align_corners=False)
        return depth


def build_depth_model(params: dict) -> MiDaSInference:
    """The `depth_stage_config` builder modules.ldm.config calls (params: the yaml's `params`)."""
    return MiDaSInference(MidasConfig.from_params(params or {}))
