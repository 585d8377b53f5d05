"""The T5 v1.1 encoder (Raffel et al. 2020; v1.1: gated-GELU feed-forward, no tied output head), the
third text encoder of SD3 (T5-XXL: d_model 4096, 24 blocks, 64 heads of 64, d_ff 10240).

Attribute names are transformers' T5EncoderModel keys, as the SD3 files store them under
`text_encoders.t5xxl.transformer.`: shared.weight, encoder.embed_tokens.weight (the same table, stored
twice; one tensor here), encoder.block.N.layer.0.SelfAttention.{q,k,v,o}, ...relative_attention_bias
(block 0 only), encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo}, layer norms, final_layer_norm.

Weights keep their storage dtype (fp16, bf16, or float8_e4m3fn: the 4.9 GB "t5xxl_fp8" files) and are
cast to the compute dtype one layer at a time, so an fp8 T5 runs with fp8's memory; the embedding rows
are picked from the stored table first and upcast after (no index kernels exist for fp8 on CUDA).
The compute dtype is fp32 or bf16: T5 v1.1 overflows fp16 activations (transformers clamps them).
No attention mask, as in SAI's and ComfyUI's SD3 code: the pad tokens take part in attention.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .clip_text import embedding


@dataclass
class T5Config:
    vocab_size: int = 32128  # SentencePiece pieces (+ padding rows)
    d_model: int = 4096  # hidden width
    d_kv: int = 64  # channels per head
    num_heads: int = 64
    d_ff: int = 10240  # gated feed-forward width
    num_layers: int = 24
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, tuple], prefix: str = "") -> "T5Config":
        """From the weights: widths from the tables, depth from the block count, heads from the bias table."""
        def shape(key: str) -> tuple:
            if prefix + key not in shapes:
                raise ValueError(f"not a T5 encoder: {prefix}{key} is missing")
            return tuple(shapes[prefix + key])

        table = shapes.get(prefix + "shared.weight") or shape("encoder.embed_tokens.weight")
        buckets, heads = shape("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        blocks = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"encoder\.block\.(\d+)\.", k))}
        return cls(vocab_size=table[0], d_model=table[1], d_kv=shape("encoder.block.0.layer.0.SelfAttention.q.weight")[0] // heads,
                   num_heads=heads, d_ff=shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")[0],
                   num_layers=max(blocks) + 1, relative_attention_num_buckets=buckets)


class Linear(nn.Linear):
    """nn.Linear without bias whose stored weight (any dtype, fp8 included) is cast to the input's dtype per call."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class T5LayerNorm(nn.Module):
    """RMS norm without mean subtraction or bias (T5's LayerNorm), variance in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight.to(x.dtype) * (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype)


def lookup(table: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rows of an embedding table of any storage dtype, as `dtype`: fp8 rows are gathered as bytes."""
    if table.dtype.itemsize == 1 and table.is_floating_point():
        return table.view(torch.uint8)[ids].view(table.dtype).to(dtype)
    return F.embedding(ids, table).to(dtype)


def relative_position_bucket(relative_position: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional buckets (Raffel et al. 2020, sec. 2.1): half the buckets per direction, exact for
    distances below num_buckets/4, logarithmic up to max_distance, the last bucket beyond."""
    num_buckets //= 2
    buckets = (relative_position > 0).long() * num_buckets
    distance = relative_position.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class T5Attention(nn.Module):
    def __init__(self, cfg: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.cfg = cfg
        inner = cfg.num_heads * cfg.d_kv
        self.q = Linear(cfg.d_model, inner)
        self.k = Linear(cfg.d_model, inner)
        self.v = Linear(cfg.d_model, inner)
        self.o = Linear(inner, cfg.d_model)
        if has_relative_attention_bias:
            self.relative_attention_bias = embedding(cfg.relative_attention_num_buckets, cfg.num_heads)

    def position_bias(self, length: int, dtype: torch.dtype) -> torch.Tensor:
        """[1, heads, L, L] additive bias from the bucketed key - query offsets."""
        positions = torch.arange(length, device=self.relative_attention_bias.weight.device)
        relative = positions[None, :] - positions[:, None]  # key - query
        buckets = relative_position_bucket(relative, self.cfg.relative_attention_num_buckets,
                                           self.cfg.relative_attention_max_distance)
        return lookup(self.relative_attention_bias.weight, buckets, dtype).permute(2, 0, 1)[None]

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (proj(x).view(b, n, self.cfg.num_heads, self.cfg.d_kv).transpose(1, 2) for proj in (self.q, self.k, self.v))
        # T5 folds the 1/sqrt(d) into its initialisation: no scaling here
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        return self.o(out.transpose(1, 2).reshape(b, n, -1))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, cfg: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, has_relative_attention_bias)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return x + self.SelfAttention(self.layer_norm(x), bias)


class T5DenseGatedActDense(nn.Module):
    """wo(gelu_tanh(wi_0 x) * wi_1 x) (Shazeer 2020, GEGLU)."""

    def __init__(self, cfg: T5Config):
        super().__init__()
        self.wi_0 = Linear(cfg.d_model, cfg.d_ff)
        self.wi_1 = Linear(cfg.d_model, cfg.d_ff)
        self.wo = Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


class T5LayerFF(nn.Module):
    def __init__(self, cfg: T5Config):
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(cfg)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config, has_relative_attention_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(cfg, has_relative_attention_bias), T5LayerFF(cfg)])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.layer[1](self.layer[0](x, bias))


class T5Stack(nn.Module):
    def __init__(self, cfg: T5Config, embed_tokens: nn.Embedding):
        super().__init__()
        self.embed_tokens = embed_tokens
        self.block = nn.ModuleList(T5Block(cfg, has_relative_attention_bias=i == 0) for i in range(cfg.num_layers))
        self.final_layer_norm = T5LayerNorm(cfg.d_model, cfg.layer_norm_epsilon)


class T5EncoderModel(nn.Module):
    """ids [B, L] -> last hidden state [B, L, d_model] (after the final RMS norm), in `compute_dtype`."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = config
        self.shared = embedding(config.vocab_size, config.d_model)
        self.encoder = T5Stack(config, self.shared)  # one module under both names: both keys, one tensor

    def forward(self, ids: torch.Tensor, compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if compute_dtype == torch.float16:
            raise ValueError("T5 v1.1 overflows in float16: compute in float32 or bfloat16")
        table = self.shared.weight
        x = lookup(table, ids.to(table.device), compute_dtype)
        bias = self.encoder.block[0].layer[0].SelfAttention.position_bias(ids.shape[1], compute_dtype)
        for block in self.encoder.block:
            x = block(x, bias)
        return self.encoder.final_layer_norm(x)
