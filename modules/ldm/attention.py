"""Cross-attention and the spatial transformer of the LDM UNet (Rombach et al. 2022, sec. 3.3).

Attribute names are the original `ldm.modules.attention` ones, so checkpoint keys load unchanged
(`transformer_blocks.0.attn1.to_q.weight`, `ff.net.0.proj.weight`, `proj_in.weight`, ...).

The attention kernel is injected: every `CrossAttention` calls `self.attention(q, k, v, heads)`,
an `AttentionFn`. The default is `sdpa_attention` (torch's scaled_dot_product_attention); an
extension swaps it per model with `UNetModel.set_attention(fn)` instead of monkey-patching.
"""
from __future__ import annotations

from typing import Optional, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .conv import Conv2d


class AttentionFn(Protocol):
    """q: [B, N, H*D], k and v: [B, M, H*D] -> [B, N, H*D], softmax(q k^T / sqrt(D)) v per head."""

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor: ...


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention through torch.nn.functional.scaled_dot_product_attention."""
    b, n, inner = q.shape
    d = inner // heads
    q, k, v = (t.reshape(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))  # [B, H, N, D]
    out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(D), as the original
    return out.transpose(1, 2).reshape(b, n, inner)


class CrossAttention(nn.Module):
    """Self-attention when context_dim is None, else attention from x (queries) to context."""

    def __init__(self, query_dim: int, context_dim: Optional[int], heads: int, dim_head: int,
                 attention: AttentionFn = sdpa_attention):
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.attention = attention
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        context = x if context is None else context  # [B, M, C_ctx]
        out = self.attention(self.to_q(x), self.to_k(context), self.to_v(context), self.heads)
        return self.to_out(out)


class GEGLU(nn.Module):
    """GELU-gated linear unit (Shazeer 2020): one projection to 2x width, half gates the other."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


# Tokens per feed-forward chunk on the CPU. Unchunked, the GEGLU's [tokens, 8 x dim] intermediates of the
# 64x64 level (84 MB) are above glibc's largest mmap threshold (32 MiB), so each is a fresh mapping that
# page-faults on every UNet call; 1024-token chunks (10 MB) are reused from the heap and stay in cache.
# Measured (SD1.5 size, 64x64 latents, batch 2, one thread): 156 -> 120 ms per feed-forward. Chunks are
# taken per image, so an image's arithmetic does not depend on the batch it is in; rows are computed
# independently, so the result is bit-identical to the unchunked one.
FF_CHUNK_TOKENS = 1024


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 3 or x.shape[1] <= FF_CHUNK_TOKENS or torch.is_grad_enabled():
            return self.net(x)
        out = None
        for b in range(x.shape[0]):
            for start in range(0, x.shape[1], FF_CHUNK_TOKENS):
                chunk = self.net(x[b, start:start + FF_CHUNK_TOKENS])
                if out is None:
                    out = chunk.new_empty(*x.shape[:-1], chunk.shape[-1])
                out[b, start:start + FF_CHUNK_TOKENS] = chunk
        return out


class BasicTransformerBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention to the text context, GEGLU feed-forward.

    disable_self_attn (x4 upscaler's lower levels): attn1 attends to the context too.
    """

    def __init__(self, dim: int, n_heads: int, d_head: int, context_dim: int,
                 disable_self_attn: bool = False, attention: AttentionFn = sdpa_attention):
        super().__init__()
        self.disable_self_attn = disable_self_attn
        self.attn1 = CrossAttention(dim, context_dim if disable_self_attn else None, n_heads, d_head, attention)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, n_heads, d_head, attention)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x), context if self.disable_self_attn else None) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Feature map [B, C, H, W] -> tokens [B, H*W, C] -> transformer blocks -> back, plus residual.

    use_linear (v2): proj_in/proj_out are Linear on tokens; v1: 1x1 convolutions on the map.
    """

    def __init__(self, in_channels: int, n_heads: int, d_head: int, depth: int, context_dim: int,
                 disable_self_attn: bool = False, use_linear: bool = False,
                 attention: AttentionFn = sdpa_attention):
        super().__init__()
        inner_dim = n_heads * d_head
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6, affine=True)
        if use_linear:
            self.proj_in = nn.Linear(in_channels, inner_dim)
        else:
            self.proj_in = Conv2d(in_channels, inner_dim, kernel_size=1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, n_heads, d_head, context_dim, disable_self_attn, attention)
            for _ in range(depth))
        if use_linear:
            self.proj_out = nn.Linear(inner_dim, in_channels)
        else:
            self.proj_out = Conv2d(inner_dim, in_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x_in = x
        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.flatten(2).transpose(1, 2)  # [B, H*W, C']
        if self.use_linear:
            x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        if self.use_linear:
            x = self.proj_out(x)
        # .contiguous(): a transposed view is channels-last, and every following conv would copy its
        # weights to match on each call (profiled: 3.9 s of copies per SD1.5 UNet step on the CPU)
        x = x.transpose(1, 2).reshape(b, -1, h, w).contiguous()
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in
