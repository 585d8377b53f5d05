"""First stage, VQ flavour: train a VQ-GAN (vqgan.VQModel) on high-res crops of the shapes scenes with
the taming objective (vq_loss.VQGANLoss) and codebook restarts (vq_loss.CodebookUsage).

Two additions for a short CPU run, both measured on the scenes: the first `unquantized_steps` train the
encoder and decoder as a plain autoencoder (the quantizer bypassed), then the whole codebook is seeded
with encoder outputs of `seed_batches` batches. Trained with quantization from the first step, the
codes (moved by Adam steps of size lr) lagged far behind the encoder: after 600 steps a 4x4 sheet of
scenes came back in two colours, PSNR 22 dB (bicubic upscaling of its 4x smaller copy: 34.6 dB)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modules.ldm.vqgan import VQModel

from . import sr_scenes
from .discriminator import NLayerDiscriminator
from .lpips import load_lpips
from .trainer import OptimizerSpec, Trainer
from .vq_loss import CodebookUsage, VQGANLoss, VQLossConfig

log = logging.getLogger(__name__)


@dataclass
class VQTraining:
    steps: int = 1000
    batch_size: int = 8
    crop: int = 12  # low-res pixels per canvas side: high-res canvases of 4x that (48 px)
    lr: float = 8e-4
    warmup_steps: int = 100
    unquantized_steps: int = 500  # plain autoencoder first (see the module docstring)
    seed_batches: int = 8  # batches of encoder outputs the codebook is seeded from when quantization starts
    restart_every: int = 100  # steps between restarts of unused codes
    restart_until: float = 0.8  # no restarts in the last 20% of the steps: the final codebook settles
    train_encoder: bool = True  # False: decoder-only fine-tuning on the frozen latent space and codebook
    latent_noise: float = 0.0  # decoder-only: Gaussian noise added to the latent before quantization
    disc_ndf: int = 32
    disc_layers: int = 2
    loss: VQLossConfig = field(default_factory=VQLossConfig)
    vgg_path: Path | None = None  # torchvision vgg16 weights for LPIPS; skipped when absent
    lpips_lin_path: Path | None = None


def train_vq(vq: VQModel, cfg: VQTraining, seed: int, checkpoint: Path | None = None) -> Trainer:
    """Train `vq` (a VQModel or VQModelInterface) in place; returns the trainer."""
    lpips = load_lpips(cfg.vgg_path, cfg.lpips_lin_path)
    if lpips is None:
        log.warning("LPIPS skipped: no VGG16 weights file at %s (L1 + codebook + patch-GAN are used)", cfg.vgg_path)
    torch.manual_seed(seed + 1)
    disc = NLayerDiscriminator(ndf=cfg.disc_ndf, n_layers=cfg.disc_layers)
    loss = VQGANLoss(disc, cfg.loss, lpips)
    usage = CodebookUsage(vq.quantize.n_e)
    if not cfg.train_encoder:
        # the latent space stays fixed (a diffusion model may already train on it), as SD's ft-MSE VAE
        for frozen in (vq.encoder, vq.quant_conv, vq.quantize):
            frozen.eval().requires_grad_(False)
    trainer = Trainer(
        modules={"vq": vq, "disc": disc, "usage": usage},
        optimizers={
            # Adam betas (0.5, 0.9) as taming's VQ-GAN configs; per-pixel losses: no clipping
            "vq": OptimizerSpec([p for p in vq.parameters() if p.requires_grad], cfg.lr, (0.5, 0.9),
                                warmup_steps=cfg.warmup_steps, cosine_to=0.1, grad_clip=None),
            "disc": OptimizerSpec(list(disc.parameters()), cfg.lr, (0.5, 0.9), grad_clip=None),
        },
        total_steps=cfg.steps, seed=seed, checkpoint=checkpoint, desc="vq-gan",
    )

    def restart(step, rng, gen, x) -> None:
        if step == cfg.unquantized_steps:  # every code is unused: all are seeded, from more data
            x = torch.cat([x, *(torch.from_numpy(sr_scenes.canvas_pairs(rng, cfg.batch_size, cfg.crop)[0])
                                for _ in range(cfg.seed_batches - 1))])
        with torch.no_grad():
            h = vq.encode_to_prequant(x)
        moved = usage.restart(vq.quantize.embedding, h.permute(0, 2, 3, 1).reshape(-1, h.shape[1]), gen)
        log.debug("step %d: %d unused codes restarted", step, moved)

    def step_fn(step, rng, gen):
        x = torch.from_numpy(sr_scenes.canvas_pairs(rng, cfg.batch_size, cfg.crop)[0])
        quantized = step >= cfg.unquantized_steps or not cfg.train_encoder
        since = step - cfg.unquantized_steps
        if cfg.train_encoder and quantized and since % cfg.restart_every == 0 and step < cfg.restart_until * cfg.steps:
            restart(step, rng, gen, x)
        with torch.set_grad_enabled(cfg.train_encoder):
            h = vq.encode_to_prequant(x)
        if cfg.latent_noise:  # a diffusion model's latents are near, not at, the encoder's
            h = h + cfg.latent_noise * torch.randn(h.shape, generator=gen).to(h)
        if quantized:
            quant, q_loss, (perplexity, _, idx) = vq.quantize(h)
            usage.update(idx)
        else:
            quant, q_loss, perplexity = h, h.new_zeros(()), h.new_zeros(())
        x_rec = VQModel.decode(vq, quant)
        g_loss, info = loss.vq_generator_loss(x, x_rec, q_loss, step, vq.decoder.conv_out.weight)
        info["ppl"] = perplexity.item()
        return {"vq": g_loss, "disc": loss.discriminator_loss(x, x_rec, step)}, info

    trainer.run(step_fn)
    return trainer


@torch.no_grad()
def latent_std(vq: VQModel, seed: int, n: int = 64) -> float:
    """Standard deviation of the (unquantized) latents of n scenes: 1 / it is the LDM scale_factor."""
    import numpy as np

    x = torch.from_numpy(sr_scenes.pairs(np.random.default_rng(seed), n)[0])
    return float(vq.encode_to_prequant(x).std())
