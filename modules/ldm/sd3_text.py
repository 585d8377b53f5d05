"""SD3's three text encoders and how their outputs become the MMDiT's conditioning.

Keys under `text_encoders.`: clip_l.transformer.text_model.* (CLIP ViT-L/14, quick_gelu),
clip_g.transformer.{text_model.*, text_projection.weight} (OpenCLIP bigG in transformers' layout, gelu),
t5xxl.transformer.{shared, encoder.*} (T5 v1.1 XXL). Each may be absent from a checkpoint; the loader
adds them from separate files.

Conditioning (Esser et al. 2024, sec. 5.1; SAI's sd3_infer.py):
- CLIP-L and CLIP-G: the penultimate hidden state WITHOUT the final LayerNorm, [B, 77, 768] and
  [B, 77, 1280], concatenated on channels to [B, 77, 2048] and zero-padded to the T5 width 4096;
- pooled vector [B, 2048] = (CLIP-L final-LN hidden at the first EOS, unprojected) | (the same for
  CLIP-G, times its text_projection);
- T5: last hidden state [B, T, 4096], T = max(77, tokens + 1), appended after the CLIP tokens:
  context [B, 77 + T, 4096] (154 tokens for prompts up to 76 T5 tokens).
- Without T5 (no weights, or no tokenizer): the T5 part is 77 zero tokens, so the context keeps the
  154-token shape SAI's pipeline produces (the convention kohya-ss' sd-scripts also use; diffusers pads
  256 zeros, ComfyUI drops the part). Zero tokens are not neutral (they become the context_embedder's
  bias and take part in attention), so the choice is one convention, kept everywhere.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .clip_text import ID_END, CLIPTextModelWithProjection, TextConfig, TextEncoder
from .t5 import T5Config, T5EncoderModel
from .t5_tokenizer import MIN_LENGTH, T5Tokenizer

CLIP_L_DEFAULTS = dict(width=768, layers=12, heads=12, hidden_act="quick_gelu", position_ids=False)
CLIP_G_DEFAULTS = dict(width=1280, layers=32, heads=20, embed_dim=1280, hidden_act="gelu", position_ids=False)


class SD3CLIP(TextEncoder):
    """CLIP-L (pads with EOS) or CLIP-G (pads with 0) of SD3; `transformer` holds the weights."""

    def __init__(self, config: TextConfig, id_pad: int):
        super().__init__(config)
        self.id_pad = id_pad
        self.transformer = CLIPTextModelWithProjection(config)

    def token_embedding_layer(self) -> nn.Embedding:
        return self.transformer.text_model.embeddings.token_embedding

    def hidden_and_pooled(self, ids: torch.Tensor, inputs_embeds: Optional[torch.Tensor] = None):
        """ids [B, 77] (and optionally their embeddings, e.g. with emphasis or textual inversion)
        -> (penultimate hidden state without the final LayerNorm [B, 77, C], pooled [B, C or proj])."""
        tm = self.transformer.text_model
        ids = ids.to(tm.final_layer_norm.weight.device)
        penultimate = self.encode_embeddings(self.embed_tokens(ids) if inputs_embeds is None else inputs_embeds)
        final = tm.final_layer_norm(tm.encoder.layers[-1](penultimate))
        eos = (ids == ID_END).int().argmax(dim=-1)  # the first EOS (CLIP-L pads with EOS too)
        pooled = final[torch.arange(final.shape[0], device=final.device), eos]
        if hasattr(self.transformer, "text_projection"):
            pooled = self.transformer.text_projection(pooled)
        return penultimate, pooled

    def encode_embeddings(self, inputs_embeds: torch.Tensor, clip_skip: int = 1) -> torch.Tensor:
        """inputs_embeds [B, T, C] -> the context part [B, T, C]: the hidden state before the last layer,
        without the final LayerNorm (SD3's fixed choice; clip_skip does not apply). The pooled vector
        needs the token ids: hidden_and_pooled."""
        tm = self.transformer.text_model
        self._check_length(inputs_embeds)
        x = inputs_embeds + tm.embeddings.position_embedding(torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device))
        for layer in tm.encoder.layers[:-1]:
            x = layer(x)
        return x


class T5XXL(nn.Module):
    """T5 encoder weights under `transformer.`; `tokenizer` (not a weight) is set by the loader."""

    def __init__(self, config: T5Config):
        super().__init__()
        self.transformer = T5EncoderModel(config)
        self.tokenizer: Optional[T5Tokenizer] = None


def clip_l(config: Optional[TextConfig] = None) -> SD3CLIP:
    return SD3CLIP(config or TextConfig(**CLIP_L_DEFAULTS), id_pad=ID_END)


def clip_g(config: Optional[TextConfig] = None) -> SD3CLIP:
    return SD3CLIP(config or TextConfig(**CLIP_G_DEFAULTS), id_pad=0)


class SD3TextEncoders(nn.Module):
    """Holds clip_l, clip_g and t5xxl when present (attributes = key prefixes) and builds the
    conditioning; `context_width` is the MMDiT's context_embedder input width (4096)."""

    def __init__(self, context_width: int, clip_l: Optional[SD3CLIP] = None, clip_g: Optional[SD3CLIP] = None,
                 t5xxl: Optional[T5XXL] = None):
        super().__init__()
        self.context_width = context_width
        for name, module in (("clip_l", clip_l), ("clip_g", clip_g), ("t5xxl", t5xxl)):
            if module is not None:
                self.add_module(name, module)

    @property
    def uses_t5(self) -> bool:
        return hasattr(self, "t5xxl") and self.t5xxl.tokenizer is not None

    def missing(self) -> list[str]:
        return [name for name in ("clip_l", "clip_g") if not hasattr(self, name)]

    def compute_dtype(self) -> torch.dtype:
        """T5's activation dtype: bf16 when the CLIPs run in bf16, else fp32 (T5 overflows fp16)."""
        dtype = self.clip_l.transformer.text_model.final_layer_norm.weight.dtype
        return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32

    def t5_context(self, prompts: Sequence[str], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if not self.uses_t5:
            return torch.zeros(len(prompts), MIN_LENGTH, self.context_width, device=device, dtype=dtype)
        ids = self.t5xxl.tokenizer.tokenize(prompts)
        return self.t5xxl.transformer(ids.to(device), self.compute_dtype()).to(dtype)

    def forward(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts -> (context [B, 77 + T, context_width], pooled [B, 2048])."""
        if self.missing():
            raise ValueError(f"this SD3 model has no {' and '.join(self.missing())} text encoder: "
                             "load it with its text encoder files (models/text_encoder)")
        prompts = list(prompts)
        l_hidden, l_pooled = self.clip_l.hidden_and_pooled(self.clip_l.tokenize(prompts))
        g_hidden, g_pooled = self.clip_g.hidden_and_pooled(self.clip_g.tokenize(prompts))
        clip_context = torch.cat([l_hidden, g_hidden], dim=-1)
        if clip_context.shape[-1] > self.context_width:
            raise ValueError(f"CLIP-L + CLIP-G width {clip_context.shape[-1]} exceeds the context width {self.context_width}")
        clip_context = F.pad(clip_context, (0, self.context_width - clip_context.shape[-1]))
        t5 = self.t5_context(prompts, clip_context.device, clip_context.dtype)
        return torch.cat([clip_context, t5], dim=1), torch.cat([l_pooled, g_pooled], dim=-1)
