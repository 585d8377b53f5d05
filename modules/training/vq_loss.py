"""The VQ-GAN first-stage objective (taming's `VQLPIPSWithDiscriminator`, Esser et al. 2021, eq. 4-7):

    L = mean(|x - x_rec| (+ LPIPS)) + codebook_weight * q_loss + lambda * disc_factor * (-D(x_rec))

q_loss is the quantizer's codebook + beta * commitment term (vqgan.VectorQuantizer; with taming's
legacy flag beta weighs the codebook term); lambda is the adaptive GAN weight and D the patch-GAN
with the hinge loss, both as for the KL autoencoder (autoencoder_loss.py, whose reconstruction term
this reuses, averaged per pixel as taming does instead of summed per image).

Codebook restarts (`CodebookUsage`) are an addition to the original recipe: a code no latent chose
for `restart_every` steps is moved onto a random encoder output of the current batch (Dhariwal et al.
2020, Jukebox; Zeghidour et al. 2021). A short CPU run otherwise leaves most of the codebook unused.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .autoencoder_loss import AutoencoderLoss, AutoencoderLossConfig


@dataclass
class VQLossConfig(AutoencoderLossConfig):
    codebook_weight: float = 1.0


class VQGANLoss(AutoencoderLoss):
    config: VQLossConfig

    def __init__(self, discriminator: nn.Module, config: VQLossConfig | None = None, lpips: nn.Module | None = None):
        super().__init__(discriminator, config or VQLossConfig(), lpips)

    def vq_generator_loss(self, x: torch.Tensor, x_rec: torch.Tensor, q_loss: torch.Tensor, step: int,
                          last_layer: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """-> (loss, log dict). last_layer: the decoder's output weight, for the adaptive GAN weight."""
        nll = self.reconstruction(x, x_rec) / x[0].numel()  # taming: the mean over pixels
        loss = nll + self.config.codebook_weight * q_loss
        log = {"rec": nll.item(), "q": q_loss.item()}
        if step >= self.config.disc_start:
            g_loss = -self.discriminator(x_rec).mean()
            d_weight = self._adaptive_weight(nll, g_loss, last_layer) if self.training else torch.tensor(0.0)
            loss = loss + d_weight * self.config.disc_factor * g_loss
            log["g"] = g_loss.item()
        return loss, log


class CodebookUsage(nn.Module):
    """Counts how often each code is chosen; `restart` re-seeds the unused ones. Its buffer is part of
    the training checkpoint, so a resumed run restarts the same codes."""

    def __init__(self, n_embed: int):
        super().__init__()
        self.register_buffer("counts", torch.zeros(n_embed, dtype=torch.long))

    def update(self, indices: torch.Tensor) -> None:
        self.counts += torch.bincount(indices.detach().flatten(), minlength=self.counts.numel()).to(self.counts)

    @torch.no_grad()
    def restart(self, codebook: nn.Embedding, z: torch.Tensor, generator: torch.Generator) -> int:
        """Move unused codes onto random rows of z [N, e_dim] (+ a little noise); reset the counts.
        Returns how many codes moved."""
        dead = (self.counts == 0).nonzero().flatten()
        if len(dead):
            pick = torch.randint(0, z.shape[0], (len(dead),), generator=generator)
            jitter = torch.randn(len(dead), z.shape[1], generator=generator) * 1e-3
            codebook.weight[dead] = z.detach()[pick].to(codebook.weight) + jitter.to(codebook.weight)
        self.counts.zero_()
        return len(dead)
