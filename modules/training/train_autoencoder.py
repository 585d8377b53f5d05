"""First stage: train a KL autoencoder on the synthetic shapes (LDM recipe, see autoencoder_loss)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import shapes
from .autoencoder_loss import AutoencoderLoss, AutoencoderLossConfig
from .discriminator import NLayerDiscriminator
from .lpips import load_lpips
from .trainer import OptimizerSpec, Trainer

log = logging.getLogger(__name__)

# (rng, n, size) -> images float [-1, 1] as numpy [n, 3, size, size]: where the training pictures come from
ImageSource = Callable[[np.random.Generator, int, int], np.ndarray]


def shapes_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """The v1 demo's pictures: one coloured shape on gray (shapes.batch, captions unused)."""
    return shapes.batch(rng, n, size, drop=False)[0]


@dataclass
class AutoencoderTraining:
    steps: int = 1000
    batch_size: int = 16
    image_size: int = 64
    lr: float = 8e-4
    warmup_steps: int = 100
    initial_logvar: float = -6.0  # start the posterior nearly deterministic: faster, sharper early on
    disc_ndf: int = 32
    disc_layers: int = 2
    loss: AutoencoderLossConfig = field(default_factory=AutoencoderLossConfig)
    train_encoder: bool = True  # False: decoder-only fine-tuning on a frozen latent space
    vgg_path: Path | None = None  # torchvision vgg16 weights for LPIPS; skipped when absent
    lpips_lin_path: Path | None = None


def init_low_logvar(ae, logvar: float) -> None:
    """Shift the posterior's log-variance outputs (second half of the channels of quant_conv, or of the
    encoder's conv_out in VAEs without quant convs, as SD3's) to `logvar`."""
    conv = ae.quant_conv if ae.config.use_quant_conv else ae.encoder.conv_out
    with torch.no_grad():
        conv.bias[conv.out_channels // 2:] = logvar


def train_autoencoder(ae, cfg: AutoencoderTraining, seed: int, checkpoint: Path | None = None,
                      images: ImageSource = shapes_images) -> Trainer:
    """Train `ae` (an AutoencoderKL) in place on `images`; returns the trainer (its step tells how far it got)."""
    lpips = load_lpips(cfg.vgg_path, cfg.lpips_lin_path)
    if lpips is None:
        log.warning("LPIPS skipped: no VGG16 weights file at %s (perceptual loss needs one; "
                    "L1 + KL + patch-GAN are used)", cfg.vgg_path)
    torch.manual_seed(seed + 1)
    disc = NLayerDiscriminator(ndf=cfg.disc_ndf, n_layers=cfg.disc_layers)
    loss = AutoencoderLoss(disc, cfg.loss, lpips)
    if not cfg.train_encoder:
        # the latent space stays fixed (a diffusion model may already train on it), as SD's ft-MSE VAE
        ae.encoder.eval().requires_grad_(False)
        if ae.config.use_quant_conv:
            ae.quant_conv.eval().requires_grad_(False)
    trainer = Trainer(
        modules={"ae": ae, "disc": disc},
        optimizers={
            # Adam betas (0.5, 0.9) as the LDM autoencoder configs; sum-per-image losses: no clipping
            "ae": OptimizerSpec([p for p in ae.parameters() if p.requires_grad], cfg.lr, (0.5, 0.9),
                                warmup_steps=cfg.warmup_steps, cosine_to=0.1, grad_clip=None),
            "disc": OptimizerSpec(list(disc.parameters()), cfg.lr, (0.5, 0.9), grad_clip=None),
        },
        total_steps=cfg.steps, seed=seed, checkpoint=checkpoint, desc="autoencoder",
    )

    def step_fn(step, rng, gen):
        x = torch.from_numpy(images(rng, cfg.batch_size, cfg.image_size))
        with torch.set_grad_enabled(cfg.train_encoder):
            posterior = ae.encode(x)
        x_rec = ae.decode(posterior.sample(gen))
        g_loss, info = loss.generator_loss(x, x_rec, posterior, step, ae.decoder.conv_out.weight)
        return {"ae": g_loss, "disc": loss.discriminator_loss(x, x_rec, step)}, info

    trainer.run(step_fn)
    return trainer


@torch.no_grad()
def latent_scale_factor(ae, seed: int, n: int = 256, image_size: int = 64, images: ImageSource = shapes_images) -> float:
    """1 / std of the latents, so the UNet sees unit variance (how SD's 0.18215 was chosen)."""
    x = torch.from_numpy(images(np.random.default_rng(seed), n, image_size))
    return float(1.0 / ae.encode(x).mode().flatten().std())
