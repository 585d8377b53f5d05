"""The UNet's plain self-attention block (`openaimodel.AttentionBlock`, Dhariwal & Nichol 2021), used
where a config sets `use_spatial_transformer: false`: the latent-diffusion models before SD, such as
the LDSR upscaler (bsr_sr). No text context; keys `norm`, `qkv` ([3C, C, 1] conv1d), `proj_out`.

QKVAttentionLegacy's layout: qkv channels are grouped per head, [q_h, k_h, v_h] for head h, and q and
k are each scaled by d^-1/4 (together 1/sqrt(d), as in scaled dot-product attention).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AttentionBlock(nn.Module):
    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1):
        super().__init__()
        self.channels = channels
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        if channels % self.num_heads:
            raise ValueError(f"attention: {channels} channels do not split into {self.num_heads} heads")
        from .unet import normalization  # GroupNorm32 (float32 statistics), as the UNet's other norms

        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)  # [B, C, T]
        qkv = self.qkv(self.norm(flat))  # [B, 3C, T], per head [q, k, v] blocks of d channels
        heads, d = self.num_heads, c // self.num_heads
        # contiguous channels last: torch's fused (flash) CPU kernel needs unit stride on d; a strided
        # view falls back to the math kernel, 10x slower at LDSR's 64x64 maps
        qkv = qkv.reshape(b, heads, 3 * d, -1).transpose(2, 3).contiguous()
        q, k, v = qkv.split(d, dim=-1)  # each [B, H, T, d]
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        out = out.transpose(2, 3).reshape(b, c, -1)
        return (flat + self.proj_out(out)).reshape(b, c, *spatial)
