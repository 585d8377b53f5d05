"""MMDiT, the diffusion network of Stable Diffusion 3 and 3.5 (Esser et al. 2024, "Scaling Rectified
Flow Transformers"), with the SD3.5 additions: RMS qk-norm (3.5 Large/Turbo/Medium) and MMDiT-X
dual attention (3.5 Medium, blocks 0-12).

Attribute names are the checkpoint keys under `model.diffusion_model.` (Stability's single-file layout):
x_embedder.proj, pos_embed, t_embedder.mlp.{0,2}, y_embedder.mlp.{0,2}, context_embedder,
joint_blocks.N.{context_block,x_block}.{attn,attn2,mlp,adaLN_modulation.1}, final_layer.

Shapes (H = hidden size, heads of 64 channels in the released models):
    x       [B, 16, h, w] latent -> tokens [B, (h/2)(w/2), H] (2x2 patches, row-major)
    context [B, L, 4096] text tokens (CLIP-L|G padded to 4096, then T5) -> [B, L, H]
    y       [B, 2048] pooled text vector; t [B] = 1000 * sigma
    output  [B, 16, h, w], the flow velocity v = noise - x0
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

PREFIX = "model.diffusion_model."


@dataclass
class MMDiTConfig:
    hidden_size: int = 1536  # H (64 * depth in the released models)
    depth: int = 24  # joint blocks
    num_heads: int = 24  # attention heads (H / 64)
    patch_size: int = 2  # latent pixels per token along a side
    in_channels: int = 16  # latent channels
    out_channels: int = 16
    pos_embed_max_size: int = 192  # P: the stored sin-cos table covers a P x P token grid
    adm_in_channels: int = 2048  # pooled vector width (CLIP-L 768 + CLIP-G 1280)
    context_in_features: int = 4096  # text token width (T5-XXL's d_model)
    mlp_ratio: float = 4.0
    qk_norm: bool = False  # RMSNorm on q and k per head (SD3.5)
    x_block_self_attn_layers: tuple = ()  # MMDiT-X blocks with a second, image-only attention (3.5 Medium)
    frequency_embedding_size: int = 256  # sinusoid width of the timestep embedding

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_shapes(cls, shapes: Mapping[str, tuple], prefix: str = PREFIX) -> "MMDiTConfig":
        """Everything from the weights' shapes, as Stability's reference derives it from a file."""
        def shape(key: str) -> tuple:
            if prefix + key not in shapes:
                raise ValueError(f"not an SD3 MMDiT: {prefix}{key} is missing")
            return tuple(shapes[prefix + key])

        hidden, in_channels, patch, _ = shape("x_embedder.proj.weight")
        blocks = {int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"joint_blocks\.(\d+)\.", k))}
        depth = max(blocks) + 1 if blocks else 0
        if depth == 0 or blocks != set(range(depth)):
            raise ValueError(f"not an SD3 MMDiT: joint blocks {sorted(blocks)[:5]}... are not numbered 0..N-1")
        grid = math.isqrt(shape("pos_embed")[1])
        ln_k = shapes.get(prefix + "joint_blocks.0.context_block.attn.ln_k.weight")
        head_dim = ln_k[0] if ln_k else hidden // depth  # without qk-norm: heads = depth (the reference's rule)
        attn2 = sorted(int(m.group(1)) for k in shapes
                       if (m := re.match(re.escape(prefix) + r"joint_blocks\.(\d+)\.x_block\.attn2\.qkv\.weight$", k)))
        return cls(hidden_size=hidden, depth=depth, num_heads=hidden // head_dim, patch_size=patch,
                   in_channels=in_channels, out_channels=shape("final_layer.linear.weight")[0] // patch ** 2,
                   pos_embed_max_size=grid, adm_in_channels=shape("y_embedder.mlp.0.weight")[1],
                   context_in_features=shape("context_embedder.weight")[1],
                   mlp_ratio=shape("joint_blocks.0.x_block.mlp.fc1.weight")[0] / hidden,
                   qk_norm=ln_k is not None, x_block_self_attn_layers=tuple(attn2))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN (Peebles & Xie 2023): x [B, N, H] * (1 + scale) + shift, per sample."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters, eps 1e-6 (the adaLN supplies scale and shift)."""
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of fractional timesteps t [B], [cos, sin] halves (DiT / GLIDE)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_pos_embed(hidden: int, grid: int) -> torch.Tensor:
    """The 2-D sin-cos table [1, grid*grid, H] the checkpoints store (MAE / DiT): for token n = row*grid + col,
    the first H/2 channels encode the column and the last H/2 the row, each as [sin, cos] halves."""
    def one_d(dim: int, pos: torch.Tensor) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
        out = pos.reshape(-1, 1).double() * omega[None]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    coords = torch.arange(grid, dtype=torch.float64)
    cols, rows = coords.repeat(grid), coords.repeat_interleave(grid)
    return torch.cat([one_d(hidden // 2, cols), one_d(hidden // 2, rows)], dim=1).float()[None]


class RMSNorm(nn.Module):
    """x / rms(x) * weight over the last dim (eps 1e-6), used per head on q and k (SD3.5 qk-norm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * rsqrt(mean(x^2) + eps) * weight, the mean from an fp32 vector norm: on the CPU 2x faster in
        # bf16 than F.rms_norm (which upcasts the whole strided q/k view; measured 12.9 vs 24.7 ms per block)
        ms = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=torch.float32).square_().div_(x.shape[-1])
        return x * torch.rsqrt(ms.add_(self.eps)).to(x.dtype) * self.weight.to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q, k, v [B, N, heads, D] -> [B, N, heads*D]; softmax(q k^T / sqrt(D)) v.

    Token-major layout throughout: the [B, heads, N, D] views handed to SDPA are strided, and torch's
    CPU flash kernel reads them in place and writes token-major, so neither side is copied (measured:
    permuted-contiguous q/k/v cost ~20% of an SD3.5 Medium forward in copies on the CPU)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """qkv projection (+ optional qk-norm) and output projection; the attention itself runs outside,
    over the joint sequence. pre_only (the last context block): no `proj`."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, pre_only: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        if not pre_only:
            self.proj = nn.Linear(dim, dim)
        if qk_norm:
            self.ln_q = RMSNorm(dim // num_heads)
            self.ln_k = RMSNorm(dim // num_heads)

    def pre_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, N, H] -> q, k, v [B, N, heads, D] (views of one qkv projection)."""
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, h // self.num_heads).unbind(2)
        if hasattr(self, "ln_q"):
            q, k = self.ln_q(q), self.ln_k(k)
        return q, k, v


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DismantledBlock(nn.Module):
    """One stream (context or x) of a joint block: adaLN-modulated attention inputs and the residual
    updates after the joint attention. adaLN chunks: shift/scale/gate for attention and MLP (6),
    +3 for `attn2` in MMDiT-X blocks (9), only shift/scale when pre_only (2)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qk_norm: bool, pre_only: bool = False,
                 self_attn2: bool = False):
        super().__init__()
        self.pre_only = pre_only
        self.attn = SelfAttention(dim, num_heads, qk_norm, pre_only)
        if self_attn2:
            self.attn2 = SelfAttention(dim, num_heads, qk_norm)
        if not pre_only:
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        n_mods = 2 if pre_only else 9 if self_attn2 else 6
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, n_mods * dim))

    def pre_attention(self, x: torch.Tensor, c: torch.Tensor):
        """-> (q, k, v) for the joint attention, (q2, k2, v2) for attn2 or None, and the modulation."""
        mods = self.adaLN_modulation(c).chunk(self.adaLN_modulation[1].out_features // x.shape[-1], dim=1)
        x_norm = layer_norm(x)
        qkv = self.attn.pre_attention(modulate(x_norm, mods[0], mods[1]))
        qkv2 = self.attn2.pre_attention(modulate(x_norm, mods[6], mods[7])) if hasattr(self, "attn2") else None
        return qkv, qkv2, mods

    def post_attention(self, x: torch.Tensor, attn: torch.Tensor, attn2: Optional[torch.Tensor], mods) -> torch.Tensor:
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods[:6]
        # attn is this stream's slice of the joint output: rows contiguous, batches not. As such a view
        # the projection runs as a batched matmul, 2.3x slower in bf16 on the CPU than one GEMM on a
        # contiguous copy (measured [2, 1024, 1536] x [1536, 1536]: 23.6 vs 10.2 ms; fp32 the same)
        x = torch.addcmul(x, gate_msa.unsqueeze(1), self.attn.proj(attn.contiguous()))  # x + gate * proj(attn)
        if attn2 is not None:
            x = torch.addcmul(x, mods[8].unsqueeze(1), self.attn2.proj(attn2))
        return torch.addcmul(x, gate_mlp.unsqueeze(1), self.mlp(modulate(layer_norm(x), shift_mlp, scale_mlp)))


class JointBlock(nn.Module):
    """Both streams attend over [context; x] in one attention (context first), then update their own
    residuals; MMDiT-X blocks add an image-only self-attention (`x_block.attn2`)."""

    def __init__(self, cfg: MMDiTConfig, index: int):
        super().__init__()
        dim, heads = cfg.hidden_size, cfg.num_heads
        self.context_block = DismantledBlock(dim, heads, cfg.mlp_ratio, cfg.qk_norm, pre_only=index == cfg.depth - 1)
        self.x_block = DismantledBlock(dim, heads, cfg.mlp_ratio, cfg.qk_norm,
                                       self_attn2=index in cfg.x_block_self_attn_layers)

    def forward(self, context: torch.Tensor, x: torch.Tensor, c: torch.Tensor):
        ctx_qkv, _, ctx_mods = self.context_block.pre_attention(context, c)
        x_qkv, x_qkv2, x_mods = self.x_block.pre_attention(x, c)
        joint = attention(*(torch.cat([a, b], dim=1) for a, b in zip(ctx_qkv, x_qkv, strict=True)))
        n_ctx = context.shape[1]
        attn2 = attention(*x_qkv2) if x_qkv2 is not None else None
        x = self.x_block.post_attention(x, joint[:, n_ctx:], attn2, x_mods)
        if self.context_block.pre_only:
            return None, x  # the last block's context output is never used
        return self.context_block.post_attention(context, joint[:, :n_ctx], None, ctx_mods), x


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, H, h/p, w/p] -> [B, N, H]


class MLPEmbedder(nn.Module):
    """Linear-SiLU-Linear; `mlp.0`, `mlp.2` (t_embedder and y_embedder)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(layer_norm(x), shift, scale))


class MMDiT(nn.Module):
    def __init__(self, config: MMDiTConfig):
        super().__init__()
        self.config = cfg = config
        dim = cfg.hidden_size
        self.x_embedder = PatchEmbed(cfg.in_channels, dim, cfg.patch_size)
        self.t_embedder = MLPEmbedder(cfg.frequency_embedding_size, dim)
        self.y_embedder = MLPEmbedder(cfg.adm_in_channels, dim)
        self.context_embedder = nn.Linear(cfg.context_in_features, dim)
        # a stored buffer in the checkpoints (the reference registers it as one); filled with the
        # sin-cos table at a real build so that random-weight models behave like trained ones
        grid = cfg.pos_embed_max_size
        pos = torch.empty(1, grid * grid, dim)
        if not pos.is_meta:
            pos = sincos_pos_embed(dim, grid).to(pos.device)
        self.register_buffer("pos_embed", pos)
        self.joint_blocks = nn.ModuleList(JointBlock(cfg, i) for i in range(cfg.depth))
        self.final_layer = FinalLayer(dim, cfg.patch_size, cfg.out_channels)

    def cropped_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """The centre h x w window (in tokens) of the P x P table -> [1, h*w, H]: any aspect ratio up
        to P tokens a side (top = (P - h) // 2, left = (P - w) // 2, as the reference)."""
        grid = self.config.pos_embed_max_size
        if h > grid or w > grid:
            size = grid * self.config.patch_size * 8
            raise ValueError(f"image too large for this model: {h}x{w} patches, at most {grid}x{grid} "
                             f"(about {size}x{size} pixels)")
        top, left = (grid - h) // 2, (grid - w) // 2
        table = self.pos_embed.view(1, grid, grid, -1)[:, top:top + h, left:left + w]
        return table.reshape(1, h * w, -1)

    def unpatchify(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, h*w, p*p*C] -> [B, C, h*p, w*p] (token layout "nhwpqc")."""
        p, c = self.config.patch_size, self.config.out_channels
        x = x.view(x.shape[0], h, w, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, context: torch.Tensor,
                skip_layers: Iterable[int] = ()) -> torch.Tensor:
        """x [B, C, h, w], t [B] (1000 * sigma), y [B, adm], context [B, L, 4096] -> velocity [B, C, h, w].

        skip_layers: joint blocks left out entirely for this call (skip-layer guidance, SD3.5).
        Sides that are not a multiple of the patch size are padded (edge values) and cropped back."""
        height, width = x.shape[-2:]
        p = self.config.patch_size
        pad_h, pad_w = -height % p, -width % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        h, w = (height + pad_h) // p, (width + pad_w) // p
        dtype = self.x_embedder.proj.weight.dtype
        tokens = (self.x_embedder(x.to(dtype)) + self.cropped_pos_embed(h, w).to(dtype)).contiguous()
        c = self.t_embedder(timestep_embedding(t, self.config.frequency_embedding_size).to(dtype))
        c = c + self.y_embedder(y.to(dtype))
        ctx = self.context_embedder(context.to(dtype))
        skip = set(skip_layers)
        for i, block in enumerate(self.joint_blocks):
            if i not in skip:
                ctx, tokens = block(ctx, tokens, c)
        out = self.unpatchify(self.final_layer(tokens, c), h, w)
        return out[..., :height, :width]
