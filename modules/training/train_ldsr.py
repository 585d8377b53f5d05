"""Second stage of the LDSR demo: the concat-conditioned UNet (bsr_sr layout) on the VQ first stage.

As the original super-resolution LDM: the high-res image is encoded without quantization (VQModelInterface)
and scaled (scale_factor), the low-res image is the conditioning, concatenated to the noisy latent
(c_concat; the latent of a f4 first stage is the low-res image's size), and the UNet learns the noise
(eps objective, diffusion_loss). Small canvases (sr_scenes.canvas_pairs) keep the steps cheap: the UNet
is convolutional (plus attention at its lowest level), so it runs on whole images afterwards. The
first stage is frozen, so the canvases are encoded once (`latent_dataset`) and the steps draw from them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import sr_scenes
from .diffusion_loss import diffusion_loss
from .trainer import OptimizerSpec, Trainer


@dataclass
class LDSRTraining:
    steps: int = 1500
    batch_size: int = 16
    crop: int = 16  # latent (= low-res) pixels per canvas side
    dataset_size: int = 2000  # canvases encoded once
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    snr_gamma: float | None = 5.0  # min-SNR weighting (Hang et al. 2023); None: the plain LDM loss


def ldsr_trainer(model, cfg: LDSRTraining, seed: int, checkpoint: Path | None = None) -> Trainer:
    unet = model.model.diffusion_model
    return Trainer(
        modules={"unet": unet},
        optimizers={"unet": OptimizerSpec(list(unet.parameters()), cfg.lr, (0.9, 0.99), cfg.weight_decay,
                                          warmup_steps=cfg.warmup_steps, cosine_to=0.05, grad_clip=1.0)},
        total_steps=cfg.steps, seed=seed, ema={"unet": cfg.ema_decay}, checkpoint=checkpoint, desc="ldsr unet",
    )


@torch.no_grad()
def latent_dataset(model, seed: int, n: int, lr_size: int, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """n canvases -> (scaled first-stage latents [n, C, lr_size, lr_size], low-res images [n, 3, ...])."""
    rng = np.random.default_rng([seed, 1])
    zs, lrs = [], []
    for start in range(0, n, chunk):
        hr, lr = (torch.from_numpy(a) for a in sr_scenes.canvas_pairs(rng, min(chunk, n - start), lr_size))
        zs.append(model.get_first_stage_encoding(model.encode_first_stage(hr)))
        lrs.append(lr)
    return torch.cat(zs), torch.cat(lrs)


def train_ldsr(model, cfg: LDSRTraining, seed: int, checkpoint: Path | None = None) -> Trainer:
    """Train the UNet of `model` (a LatentDiffusion with concat conditioning and a trained VQ first stage)."""
    model.first_stage_model.eval().requires_grad_(False)
    model.model.diffusion_model.requires_grad_(True)
    trainer = ldsr_trainer(model, cfg, seed, checkpoint)
    z_all, lr_all = latent_dataset(model, seed, cfg.dataset_size, cfg.crop)

    def step_fn(step, rng, gen):
        pick = torch.from_numpy(rng.integers(0, len(z_all), cfg.batch_size))
        loss = diffusion_loss(model, z_all[pick], {"c_concat": [lr_all[pick]]}, gen, cfg.snr_gamma)
        return {"unet": loss}, {"loss": loss.item()}

    trainer.run(step_fn)
    return trainer
