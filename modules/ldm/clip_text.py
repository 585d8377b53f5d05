"""CLIP text encoders of SD v1 (OpenAI CLIP ViT-L/14) and v2 (OpenCLIP ViT-H/14), text tower only.

Radford et al. 2021: a causal (GPT-style) transformer over BPE tokens; SD feeds the per-token
hidden states [B, 77, C] to the UNet's cross-attention.

- `FrozenCLIPEmbedder` (v1): keys `transformer.text_model.*` in transformers' CLIPTextModel layout,
  quick_gelu, pads with <|endoftext|> (49407); clip skip N = hidden_states[-N] then final_layer_norm.
- `FrozenOpenCLIPEmbedder` (v2): keys `model.*` in open_clip's layout, gelu, pads with 0;
  layer "penultimate" stops one block early, then ln_final ("last": all blocks). clip_skip is
  ignored on v2, as A1111 does: the yaml's layer decides.

Sizes come from `cond_stage_config.params` (the official yaml files name none):
  width      transformer width C (768 v1 / 1024 v2)
  layers     number of transformer blocks (12 / 24)
  heads      attention heads (12 / 16)
  vocab_size token embedding rows (49408: the BPE vocabulary; keep it for the real tokenizer)
  max_length positions (77)
  embed_dim  v2 only: columns of `text_projection` (1024), unused for conditioning
  layer      v2: "penultimate" (default) or "last"; ignored on v1 (clip skip decides, as in A1111)
Tokenizer: open_clip's SimpleTokenizer (the same BPE for v1 and v2), created once and shared.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ID_START, ID_END = 49406, 49407  # <|startoftext|>, <|endoftext|>


@dataclass
class TextConfig:
    width: int = 768  # C, the hidden size and the UNet's context_dim
    layers: int = 12  # transformer blocks
    heads: int = 12  # attention heads
    vocab_size: int = 49408  # BPE vocabulary size
    max_length: int = 77  # positions: BOS + 75 tokens + EOS
    embed_dim: Optional[int] = None  # v2: text_projection width (None = width)
    layer: str = "last"  # which hidden state is the output (see module docstring)
    hidden_act: str = "quick_gelu"  # CLIP layout MLP activation: quick_gelu (OpenAI CLIP) or gelu (OpenCLIP bigG)
    position_ids: bool = True  # CLIP layout: the checkpoint stores embeddings.position_ids (SD v1; not SD3)

    @classmethod
    def from_params(cls, params: Optional[dict], **defaults) -> "TextConfig":
        names = {f.name for f in fields(cls)}
        merged = {**defaults, **{k: v for k, v in dict(params or {}).items() if k in names}}
        return cls(**merged)


@functools.lru_cache(maxsize=1)
def shared_tokenizer():
    """open_clip's SimpleTokenizer; loading its BPE takes ~0.5 s, so one instance serves all models.

    `import open_clip` also imports timm and torchvision (5-10 s); its tokenizer.py needs none of
    that (ftfy, regex, numpy, torch only), so it is loaded on its own unless open_clip is loaded.
    """
    module = sys.modules.get("open_clip.tokenizer")
    if module is None:
        spec = importlib.util.find_spec("open_clip")
        if spec is None or not spec.submodule_search_locations:
            raise ValueError("the open_clip package (open_clip_torch) is needed for its tokenizer: pip install it")
        path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.py"
        file_spec = importlib.util.spec_from_file_location("_open_clip_tokenizer", path)
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def init_normal_(tensor: torch.Tensor, std: float) -> None:
    """N(0, std) init, skipped on the meta device (torch's meta normal_ costs seconds on first use)."""
    if not tensor.is_meta:
        nn.init.normal_(tensor, std=std)


def embedding(num: int, dim: int) -> nn.Embedding:
    """nn.Embedding initialised N(0, 1) as torch does, without the slow meta-device init."""
    weight = torch.empty(num, dim)
    init_normal_(weight, 1.0)
    return nn.Embedding(num, dim, _weight=weight)


def causal_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """qkv [B, T, 3C] (q, k, v concatenated) -> [B, T, C], each token sees itself and earlier ones."""
    b, t, c3 = qkv.shape
    q, k, v = qkv.reshape(b, t, 3, heads, c3 // 3 // heads).permute(2, 0, 3, 1, 4)  # 3 x [B, H, T, D]
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2).reshape(b, t, c3 // 3)


class TextEncoder(nn.Module):
    """The interface the conditioning code uses; subclasses define the layout and `_transformer`."""

    id_start, id_end = ID_START, ID_END
    id_pad: int

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.width = config.width
        self.max_length = config.max_length

    @property
    def tokenizer(self):
        return shared_tokenizer()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> ids [B, max_length]: BOS, tokens (truncated), EOS, then id_pad."""
        rows = []
        for text in texts:
            ids = self.tokenizer.encode(text)[: self.max_length - 2]
            ids = [self.id_start] + ids + [self.id_end]
            rows.append(ids + [self.id_pad] * (self.max_length - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> token embeddings [B, T, C] (no positions)."""
        layer = self.token_embedding_layer()
        return layer(ids.to(layer.weight.device))

    def encode_tokens(self, ids: torch.Tensor, clip_skip: int = 1) -> torch.Tensor:
        """ids [B, 77] -> hidden states [B, 77, C]."""
        return self.encode_embeddings(self.embed_tokens(ids), clip_skip)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """list of prompts -> conditioning [B, 77, C]."""
        return self.encode_tokens(self.tokenize(list(texts)))

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return self(texts)

    def _check_length(self, inputs_embeds: torch.Tensor) -> None:
        if inputs_embeds.shape[1] > self.max_length:
            raise ValueError(f"text encoder: {inputs_embeds.shape[1]} tokens given, at most {self.max_length} fit; "
                             "split long prompts into chunks of 75 tokens")


# ---- v1: transformers' CLIPTextModel layout -------------------------------------------------------


class CLIPAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1)
        return self.out_proj(causal_attention(qkv, self.heads))


class CLIPMLP(nn.Module):
    def __init__(self, width: int, hidden_act: str = "quick_gelu"):
        super().__init__()
        if hidden_act not in ("quick_gelu", "gelu"):
            raise ValueError(f"CLIP hidden_act={hidden_act!r}: use 'quick_gelu' or 'gelu'")
        self.hidden_act = hidden_act
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.hidden_act == "gelu":  # OpenCLIP bigG (SDXL / SD3 CLIP-G)
            return self.fc2(F.gelu(h))
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick_gelu, what OpenAI CLIP was trained with


class CLIPEncoderLayer(nn.Module):
    def __init__(self, width: int, heads: int, hidden_act: str = "quick_gelu"):
        super().__init__()
        self.self_attn = CLIPAttention(width, heads)
        self.layer_norm1 = nn.LayerNorm(width)
        self.mlp = CLIPMLP(width, hidden_act)
        self.layer_norm2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(cfg.width, cfg.heads, cfg.hidden_act) for _ in range(cfg.layers))


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.token_embedding = embedding(cfg.vocab_size, cfg.width)
        self.position_embedding = embedding(cfg.max_length, cfg.width)
        # kept for the checkpoint layout only: merged files often carry damaged values (floats,
        # off-by-one), so forward uses arange instead. Made on the CPU even in a meta build: it is
        # 77 integers, and torch's first arange on meta costs ~2 s of imports (measured by the loader).
        if not cfg.position_ids:
            return
        self.register_buffer("position_ids", torch.arange(cfg.max_length, device="cpu").expand((1, -1)),
                             persistent=True)


class CLIPTextTransformer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.embeddings = CLIPTextEmbeddings(cfg)
        self.encoder = CLIPEncoder(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.width)


class CLIPTextModel(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.text_model = CLIPTextTransformer(cfg)


class CLIPTextModelWithProjection(nn.Module):
    """transformers' CLIPTextModelWithProjection layout (`text_model.*`, `text_projection.weight`
    [embed_dim, width], no bias), as SD3 stores CLIP-G; CLIP-L's files leave the projection out
    (embed_dim None)."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.text_model = CLIPTextTransformer(cfg)
        if cfg.embed_dim is not None:
            self.text_projection = nn.Linear(cfg.width, cfg.embed_dim, bias=False)


class FrozenCLIPEmbedder(TextEncoder):
    """SD v1 text encoder; keys under `cond_stage_model.transformer.text_model.`."""

    id_pad = ID_END

    def __init__(self, config: TextConfig):
        super().__init__(config)  # config.layer is ignored, as A1111 does: clip skip decides per generation
        self.transformer = CLIPTextModel(config)

    def token_embedding_layer(self) -> nn.Embedding:
        return self.transformer.text_model.embeddings.token_embedding

    def encode_embeddings(self, inputs_embeds: torch.Tensor, clip_skip: int = 1) -> torch.Tensor:
        """inputs_embeds [B, T, C] -> [B, T, C]: + positions, causal layers, hidden_states[-clip_skip], LN."""
        tm = self.transformer.text_model
        n_layers = len(tm.encoder.layers)
        if not 1 <= clip_skip <= n_layers:
            raise ValueError(f"clip skip must be between 1 and {n_layers}, got {clip_skip}")
        self._check_length(inputs_embeds)
        positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
        x = inputs_embeds + tm.embeddings.position_embedding(positions)
        for layer in tm.encoder.layers[: n_layers - (clip_skip - 1)]:
            x = layer(x)
        return tm.final_layer_norm(x)


# ---- v2: open_clip's text tower layout ---------------------------------------------------------


class MultiheadSelfAttention(nn.Module):
    """nn.MultiheadAttention's parameter layout (in_proj_weight = [q; k; v]), causal, via SDPA."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # [B, T, 3C]
        return self.out_proj(causal_attention(qkv, self.heads))


class OpenCLIPMLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiheadSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = OpenCLIPMLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class OpenCLIPTransformer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(cfg.width, cfg.heads) for _ in range(cfg.layers))


class OpenCLIPText(nn.Module):
    """open_clip.CLIP with the vision tower left out (the original deletes `visual` after loading)."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.empty(cfg.max_length, cfg.width))
        self.text_projection = nn.Parameter(torch.empty(cfg.width, cfg.embed_dim or cfg.width))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # 0-d, CLIP's temperature
        self.transformer = OpenCLIPTransformer(cfg)
        self.token_embedding = embedding(cfg.vocab_size, cfg.width)
        self.ln_final = nn.LayerNorm(cfg.width)
        init_normal_(self.positional_embedding, std=0.01)
        init_normal_(self.text_projection, std=cfg.width ** -0.5)


class FrozenOpenCLIPEmbedder(TextEncoder):
    """SD v2 text encoder; keys under `cond_stage_model.model.`."""

    id_pad = 0

    def __init__(self, config: TextConfig):
        if config.layer not in ("penultimate", "last"):
            raise ValueError(f"FrozenOpenCLIPEmbedder layer={config.layer!r}: use 'penultimate' or 'last'")
        super().__init__(config)
        self.layer_idx = 1 if config.layer == "penultimate" else 0  # blocks left out at the end
        self.model = OpenCLIPText(config)

    def token_embedding_layer(self) -> nn.Embedding:
        return self.model.token_embedding

    def encode_embeddings(self, inputs_embeds: torch.Tensor, clip_skip: int = 1) -> torch.Tensor:
        """inputs_embeds [B, T, C] -> [B, T, C]; clip_skip is ignored (the yaml's layer decides)."""
        self._check_length(inputs_embeds)
        x = inputs_embeds + self.model.positional_embedding[: inputs_embeds.shape[1]]
        blocks = self.model.transformer.resblocks
        for block in blocks[: len(blocks) - self.layer_idx]:
            x = block(x)
        return self.model.ln_final(x)


V1_DEFAULTS = dict(width=768, layers=12, heads=12, layer="last")  # CLIP ViT-L/14 text
V2_DEFAULTS = dict(width=1024, layers=24, heads=16, embed_dim=1024, layer="penultimate")  # OpenCLIP ViT-H/14


def build_clip_embedder(params: Optional[dict]) -> FrozenCLIPEmbedder:
    return FrozenCLIPEmbedder(TextConfig.from_params(params, **V1_DEFAULTS))


def build_open_clip_embedder(params: Optional[dict]) -> FrozenOpenCLIPEmbedder:
    return FrozenOpenCLIPEmbedder(TextConfig.from_params(params, **V2_DEFAULTS))
