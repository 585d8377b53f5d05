"""Non-text conditioning stages of latent-diffusion models.

- `ClassEmbedder` (`ldm.modules.encoders.modules.ClassEmbedder`, cin256-v2: ImageNet classes): a class
  label -> one context token [B, 1, embed_dim] for the UNet's cross-attention. Key `embedding.weight`
  [n_classes, embed_dim]; cin256-v2 has 1001 rows (the 1000 classes + an unconditional one).
- `IdentityConditioning` (`torch.nn.Identity`, the LDSR upscaler): the conditioning is the input itself
  (there the low-res image, concatenated to the latent). No weights.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn


class ClassEmbedder(nn.Module):
    def __init__(self, n_classes: int = 1000, embed_dim: int = 512, key: str = "class"):
        super().__init__()
        self.key = key  # the batch key the original reads; informative here
        self.n_classes = n_classes
        self.embedding = nn.Embedding(n_classes, embed_dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B] (int) -> context [B, 1, embed_dim]."""
        labels = labels.long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.n_classes):
            raise ValueError(f"class labels must be in [0, {self.n_classes - 1}], got {labels.tolist()}")
        return self.embedding(labels.to(self.embedding.weight.device)[:, None])

    def encode(self, labels: Union[torch.Tensor, Sequence[int]]) -> torch.Tensor:
        """What LatentDiffusion.get_learned_conditioning calls: labels (a list or a tensor) -> context."""
        return self(labels if isinstance(labels, torch.Tensor) else torch.tensor([int(v) for v in labels]))


class IdentityConditioning(nn.Identity):
    """`cond_stage_config: torch.nn.Identity`: get_learned_conditioning(c) returns c unchanged."""

    def encode(self, c):
        return c


def build_class_embedder(params: Optional[dict]) -> ClassEmbedder:
    p = params or {}
    return ClassEmbedder(int(p.get("n_classes", 1000)), int(p.get("embed_dim", 512)), p.get("key", "class"))


def build_identity(params: Optional[dict]) -> IdentityConditioning:
    return IdentityConditioning()
