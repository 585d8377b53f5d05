"""First-stage (KL autoencoder) losses: the LDM recipe of `LPIPSWithDiscriminator`.

generator side: L1 (+ LPIPS when available), summed per image, + kl_weight * KL
               + adaptive_weight * disc_factor * (-D(x_rec)) once the discriminator has started;
discriminator: hinge loss on real vs reconstructed patches (Esser et al. 2021, VQGAN).

One addition: L1 may weight foreground pixels (far from the image's border colour) more, because
small objects on plain backgrounds are otherwise a tiny share of the loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AutoencoderLossConfig:
    kl_weight: float = 1e-6
    perceptual_weight: float = 1.0  # used only when an LPIPS module is given
    disc_start: int = 2000  # steps before the GAN terms switch on
    disc_weight: float = 0.5
    disc_factor: float = 1.0
    foreground_weight: float = 4.0  # extra L1 weight on foreground pixels (0 = plain L1)


def foreground_weights(x: torch.Tensor, weight: float, threshold: float = 0.3) -> torch.Tensor:
    """1 + weight where a pixel is far from its image's border colour; x in [-1, 1], [B, 3, H, W]."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    bg = border.median(dim=-1).values[..., None, None]
    fg = ((x - bg).pow(2).sum(1, keepdim=True).sqrt() > threshold).float()
    return 1.0 + weight * fg


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


class AutoencoderLoss(nn.Module):
    def __init__(self, discriminator: nn.Module, config: AutoencoderLossConfig | None = None,
                 lpips: nn.Module | None = None):
        super().__init__()
        self.discriminator = discriminator
        self.config = config or AutoencoderLossConfig()
        self.lpips = lpips

    def reconstruction(self, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
        """Per-image sum of weighted L1 (+ LPIPS), averaged over the batch (the original's nll_loss)."""
        rec = (x - x_rec).abs()
        if self.config.foreground_weight:
            rec = rec * foreground_weights(x, self.config.foreground_weight)
        if self.lpips is not None:
            rec = rec + self.config.perceptual_weight * self.lpips(x, x_rec)
        return rec.sum() / x.shape[0]

    def generator_loss(self, x, x_rec, posterior, step: int, last_layer: torch.Tensor | None = None):
        """-> (loss, log dict). last_layer: the decoder's output weight, for the adaptive GAN weight."""
        nll = self.reconstruction(x, x_rec)
        kl = posterior.kl().sum() / x.shape[0]
        loss = nll + self.config.kl_weight * kl
        log = {"rec": nll.item() / x[0].numel(), "kl": kl.item()}
        if step >= self.config.disc_start:
            g_loss = -self.discriminator(x_rec).mean()
            d_weight = self._adaptive_weight(nll, g_loss, last_layer) if self.training else torch.tensor(0.0)
            loss = loss + d_weight * self.config.disc_factor * g_loss
            log["g"] = g_loss.item()
        return loss, log

    def discriminator_loss(self, x, x_rec, step: int) -> torch.Tensor | None:
        if step < self.config.disc_start:
            return None
        return self.config.disc_factor * hinge_d_loss(self.discriminator(x.detach()),
                                                      self.discriminator(x_rec.detach()))

    def _adaptive_weight(self, nll, g_loss, last_layer):
        """Balance the GAN gradient against the reconstruction gradient at the last layer (VQGAN eq. 7)."""
        if last_layer is None:
            return torch.tensor(self.config.disc_weight)
        nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
        g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        weight = torch.clamp(nll_grad.norm() / (g_grad.norm() + 1e-4), 0.0, 1e4).detach()
        return weight * self.config.disc_weight
