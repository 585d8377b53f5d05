"""Second stage: train the UNet and the text encoder together on the frozen autoencoder's latents.

The text encoder is trained too (the original SD used a frozen pretrained CLIP; ours starts random
and the caption vocabulary is tiny, so learning it jointly is what makes prompts mean something).
Captions are empty 10% of the time (see shapes.EMPTY_CAPTION_P): the unconditional prediction that
classifier-free guidance needs.

Left/right needs help: the UNet's attention has no position encoding, so "on the left" can only
act through the zero padding of its convolutions. Measured on the demo model: with plain batches
the images for "left" and "right" stayed identical after 1200 steps while colour was right from
step 600. Two things made it learn (side right in 10/10 after ~1800 steps): mirror pairs (half of
each batch is the other half mirrored, with the same noise and timestep, so only the side word
tells them apart) and up-weighting high-noise steps, where the layout is decided.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import shapes
from .diffusion_loss import diffusion_loss
from .trainer import CaptionedSource, Trainer, ema_evaluation, joint_trainer, swapped_in_ema

log = logging.getLogger(__name__)

@dataclass
class DiffusionTraining:
    steps: int = 2000
    batch_size: int = 32
    image_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    ema_decay: float = 0.995
    snr_gamma: float | None = 5.0  # min-SNR weighting of low-noise steps; None for the plain LDM loss
    high_noise_max: float | None = 20.0  # up-weight high-noise steps (see high_noise_weight); None: off
    eval_every: int = 0  # steps between evaluations (0: never)
    mirror_pairs: bool = True  # the batch's halves pair up and share noise (shapes.batch mirrors; data may pair otherwise)


def trainable(model) -> dict[str, torch.nn.Module]:
    """The networks this stage trains, by checkpoint prefix."""
    return {"unet": model.model.diffusion_model, "text": model.cond_stage_model}


def diffusion_trainer(model, cfg: DiffusionTraining, seed: int, checkpoint: Path | None = None) -> Trainer:
    """The trainer over the model's trained networks (optimizer, EMA), resumed from `checkpoint` if it
    exists: what train_diffusion runs, and what the demo's export stages read the EMA weights from."""
    return joint_trainer(trainable(model), cfg, seed, checkpoint, "diffusion", f"diffusion ({model.parameterization})")


def train_diffusion(model, cfg: DiffusionTraining, seed: int, checkpoint: Path | None = None,
                    evaluate: Callable[[object, int], None] | None = None,
                    image_conditioning: Callable | None = None, data: CaptionedSource | None = None) -> Trainer:
    """Train `model` (a LatentDiffusion whose first stage is trained) in place.

    evaluate(model_with_ema_weights, step) is called every cfg.eval_every steps.
    image_conditioning(model, images [B, 3, H, W], rng) -> c_concat, for hybrid models (inpainting,
    depth), or a dict of cond parts ({"c_concat": [...], "c_adm": ...} for the x4 upscaler).
    data: the captioned pictures (default: shapes.batch, with mirror pairs when cfg.mirror_pairs).
    """
    model.first_stage_model.eval().requires_grad_(False)
    nets = trainable(model)
    for net in nets.values():
        net.requires_grad_(True)
    trainer = diffusion_trainer(model, cfg, seed, checkpoint)

    def step_fn(step, rng, gen):
        if data is None:
            images, captions, _ = shapes.batch(rng, cfg.batch_size, cfg.image_size, mirror_pairs=cfg.mirror_pairs)
        else:
            images, captions = data(rng, cfg.batch_size, cfg.image_size)
        x = torch.from_numpy(images)
        with torch.no_grad():
            z = model.get_first_stage_encoding(model.encode_first_stage(x), gen)
        cond = model.get_learned_conditioning(captions)
        if image_conditioning is not None:
            parts = image_conditioning(model, x, rng)
            cond = {"c_crossattn": [cond], **(parts if isinstance(parts, dict) else {"c_concat": [parts]})}
        loss = diffusion_loss(model, z, cond, gen, cfg.snr_gamma, cfg.high_noise_max, cfg.mirror_pairs)
        return {"diffusion": loss}, {"loss": loss.item()}

    trainer.run(step_fn, ema_evaluation(model, trainer, evaluate, cfg.eval_every))
    return trainer


def ema_state_dict(model, trainer: Trainer) -> dict[str, torch.Tensor]:
    """The model's state dict with its trained networks' EMA weights, as copies (the tensors of a
    plain state_dict() taken inside swapped_in_ema are overwritten in place when the block ends)."""
    with swapped_in_ema(model, trainer):
        return {k: v.clone() for k, v in model.state_dict().items()}
