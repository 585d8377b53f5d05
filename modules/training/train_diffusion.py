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
from .diffusion_loss import diffusion_loss, draw_timesteps, q_sample
from .grounding_loss import CrossAttentionMaps, grounding_loss
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
    grounding_weight: float = 0.0  # weight of grounding_loss (the data then gives each thing's mask); 0: off
    grounding_start: int = 0  # the step it starts at (the depth demo learns the colour words first)


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
    data: the captioned pictures (default: shapes.batch, with mirror pairs when cfg.mirror_pairs), and
    may give each picture's (noun, mask) per named thing third, for cfg.grounding_weight (grounding_loss).
    """
    if cfg.grounding_weight and not cfg.mirror_pairs:
        raise ValueError("grounding needs mirror_pairs: its pass reads the pair partners' latents")
    model.first_stage_model.eval().requires_grad_(False)
    nets = trainable(model)
    for net in nets.values():
        net.requires_grad_(True)
    trainer = diffusion_trainer(model, cfg, seed, checkpoint)

    def step_fn(step, rng, gen):
        grounding = None
        if data is None:
            images, captions, _ = shapes.batch(rng, cfg.batch_size, cfg.image_size, mirror_pairs=cfg.mirror_pairs)
        else:
            images, captions, *masks = data(rng, cfg.batch_size, cfg.image_size)
            grounding = masks[0] if cfg.grounding_weight and masks else None
        x = torch.from_numpy(images)
        with torch.no_grad():
            z = model.get_first_stage_encoding(model.encode_first_stage(x), gen)
        cond = model.get_learned_conditioning(captions)
        if image_conditioning is not None:
            parts = image_conditioning(model, x, rng)
            cond = {"c_crossattn": [cond], **(parts if isinstance(parts, dict) else {"c_concat": [parts]})}
        if grounding is None or step < cfg.grounding_start:
            loss = diffusion_loss(model, z, cond, gen, cfg.snr_gamma, cfg.high_noise_max, cfg.mirror_pairs)
            return {"diffusion": loss}, {"loss": loss.item()}
        t = draw_timesteps(model, z.shape[0], gen, cfg.mirror_pairs)
        loss = diffusion_loss(model, z, cond, gen, cfg.snr_gamma, cfg.high_noise_max, cfg.mirror_pairs, t)
        attention = grounding_pass(model, z, t, cond, gen)
        ground = grounding_loss(attention.maps, model.cond_stage_model, captions, grounding)
        return {"diffusion": loss + cfg.grounding_weight * ground}, {"loss": loss.item(), "ground": ground.item()}

    trainer.run(step_fn, ema_evaluation(model, trainer, evaluate, cfg.eval_every))
    return trainer


def grounding_pass(model, z: torch.Tensor, t: torch.Tensor, cond, gen: torch.Generator) -> CrossAttentionMaps:
    """The cross-attention of a forward pass on the pair partners' latents (the batch's halves are the
    same shapes in the same places with the colours moved round, see demo_scenes.scene_pairs), with
    each sample's own caption and depth.

    Grounded on its own noisy latent, the attention learned a shortcut: the pixels read the noun whose
    colour they already show (measured: the test picture's blue square read "green circle", its red
    circle "yellow square", and depth2img repainted them so - whatever the word order). In training
    the noisy picture always shows the caption's colours; in depth2img it shows the input's. On the
    partners' latents the colour showing through is the wrong one, so only the shapes' outlines tell
    which noun a pixel belongs to. Only the attention is used: this pass has no diffusion target.
    """
    half = z.shape[0] // 2
    partners = torch.cat([z[half:], z[:half]])
    noise = torch.randn(z.shape, generator=gen, device="cpu").to(z.device, z.dtype)
    x_t = q_sample(partners, t.to(z.device), noise, model.alphas_cumprod).to(z.dtype)
    with CrossAttentionMaps(model.model.diffusion_model) as attention:
        model.apply_model(x_t, t.to(z.device), cond)
    return attention


def ema_state_dict(model, trainer: Trainer) -> dict[str, torch.Tensor]:
    """The model's state dict with its trained networks' EMA weights, as copies (the tensors of a
    plain state_dict() taken inside swapped_in_ema are overwritten in place when the block ends)."""
    with swapped_in_ema(model, trainer):
        return {k: v.clone() for k, v in model.state_dict().items()}
