"""Token grounding: cross-attention supervised with the things' masks (TokenCompose, Wang et al. 2024).

The diffusion loss alone teaches which colour goes with which shape only through a weak, indirect
signal, and the depth demo never learned it (3000-5455 steps, colour-swap pairs, 16x16 attention:
"a green circle and a yellow square" painted the circle yellow and the square green whatever the word
order - the prompt was read as a bag of colours). This loss says it directly: the pixels of a thing
should attend to the token that names it, and that token should be attended from its thing only.

Only the noun is supervised ("circle", not "green"): the text encoder is causal, so the adjective's
token cannot know which noun follows it, while the noun's token has seen its adjective - binding the
colour to the noun is the text encoder's part, routing the pixels to the noun the UNet's.

Two terms per cross-attention layer whose grid is at least `min_grid` (coarser maps cannot tell two
things apart), the attention averaged over heads:
- token: (1 - the share of the noun's attention that falls inside its thing's mask)^2 (TokenCompose's
  L_token);
- pixel: for the pixels inside a thing (mask > 0.5), cross-entropy of "which thing's noun they attend
  to most" over the nouns of the caption (where TokenCompose takes a BCE with each mask alone: this
  says it among the things, which is what binding needs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# For each sample: (noun, mask) per thing the caption names - the word and the bool [H, W] picture
# pixels where that thing is visible. An empty list for an empty caption.
Grounding = list[list[tuple[str, np.ndarray]]]


class CrossAttentionMaps:
    """Context manager: records softmax(q k^T / sqrt(d)) of every cross-attention (`attn2`) of `unet`
    whose query grid is at least min_grid x min_grid, averaged over heads: [B, N, M] per layer."""

    def __init__(self, unet: torch.nn.Module, min_grid: int = 8):
        self.layers = [m for name, m in unet.named_modules() if name.endswith("attn2")]
        self.min_grid = min_grid
        self.maps: list[torch.Tensor] = []
        self.handles = []

    def _record(self, module, args, output) -> None:
        x, context = args[0], args[1]
        if x.shape[1] < self.min_grid ** 2:
            return
        b, n, inner = x.shape[0], x.shape[1], module.to_q.out_features
        d = inner // module.heads
        q = module.to_q(x).reshape(b, n, module.heads, d).transpose(1, 2)
        k = module.to_k(context).reshape(b, context.shape[1], module.heads, d).transpose(1, 2)
        self.maps.append((q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1).mean(1))

    def __enter__(self):
        self.maps = []
        self.handles = [m.register_forward_hook(self._record) for m in self.layers]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


@dataclass
class _Sample:
    index: int  # in the batch
    tokens: list[int]  # the noun's token position per thing
    masks: torch.Tensor  # float [K, H, W]


def _samples(text_encoder, captions: list[str], grounding: Grounding) -> list[_Sample]:
    """The samples whose caption names its things, with each noun's token position."""
    out = []
    for i, (caption, things) in enumerate(zip(captions, grounding, strict=True)):
        if not caption or not things:
            continue
        ids = text_encoder.tokenize([caption])[0].tolist()
        tokens = []
        for noun, _ in things:
            noun_ids = text_encoder.tokenizer.encode(noun)
            if len(noun_ids) != 1 or ids.count(noun_ids[0]) != 1:
                raise ValueError(f"grounding needs each noun as one token, once in the caption: {noun!r} in {caption!r}")
            tokens.append(ids.index(noun_ids[0]))
        masks = torch.from_numpy(np.stack([m for _, m in things]).astype(np.float32))
        out.append(_Sample(i, tokens, masks))
    return out


def grounding_loss(maps: list[torch.Tensor], text_encoder, captions: list[str], grounding: Grounding) -> torch.Tensor:
    """The token + pixel terms (module docstring), averaged over layers and over the grounded samples."""
    samples = _samples(text_encoder, captions, grounding)
    if not samples or not maps:
        return maps[0].new_zeros(()) if maps else torch.zeros(())
    total = []
    for attn in maps:
        grid = math.isqrt(attn.shape[1])
        for s in samples:
            a = attn[s.index]  # [N, M]
            masks = F.adaptive_avg_pool2d(s.masks[None], grid)[0].flatten(1).to(a)  # [K, N], share inside
            noun = a[:, s.tokens].T  # [K, N]: attention each pixel pays each noun
            inside = (noun * masks).sum(1) / noun.sum(1).clamp_min(1e-8)
            terms = [(1 - inside).pow(2).mean()]
            if len(s.tokens) > 1:
                owner = masks > 0.5  # [K, N]
                if owner.any():
                    logp = (noun / noun.sum(0, keepdim=True).clamp_min(1e-8)).clamp_min(1e-8).log()
                    terms.append(-(logp * owner).sum() / owner.sum())
            total.append(sum(terms))
    return torch.stack(total).mean()
