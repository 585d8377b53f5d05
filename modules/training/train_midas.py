"""The depth estimator of the depth2img demo: a tiny MiDaS DPT-Hybrid learns picture -> inverse depth.

MiDaS itself was trained on mixed data sets whose depths have unknown scale and shift, hence its
scale-and-shift-invariant loss. The synthetic scenes' inverse depth is exact and on one scale
(1 = the floor at the bottom row), so a plain L1 on it is used, plus L1 on its horizontal and
vertical differences (the gradient-matching term of Ranftl et al. 2020, without the scales), which
keeps outlines sharp where the L1 alone settles for blurred edges. The input goes through the app's
own preprocessing (depth2img.prepare_midas_input), so the network sees at training time exactly
what it sees in the depth2img tab.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from modules.processing.depth2img import prepare_midas_input

from . import scenes
from .trainer import OptimizerSpec, Trainer

log = logging.getLogger(__name__)


@dataclass
class MidasTraining:
    steps: int = 2000
    batch_size: int = 16
    image_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    gradient_weight: float = 1.0  # weight of the L1 on depth differences


def init_positive_output(midas, bias: float = 0.3) -> None:
    """The head ends in a ReLU: start its last convolution above zero so no output starts dead."""
    with torch.no_grad():
        midas.model.scratch.output_conv[-2].bias.fill_(bias)


def depth_loss(pred: torch.Tensor, target: torch.Tensor, gradient_weight: float) -> torch.Tensor:
    """L1 on inverse depth and on its x / y differences; pred, target [B, 1, H, W]."""
    loss = F.l1_loss(pred, target)
    if gradient_weight:
        dx = lambda d: d[..., :, 1:] - d[..., :, :-1]  # noqa: E731
        dy = lambda d: d[..., 1:, :] - d[..., :-1, :]  # noqa: E731
        loss = loss + gradient_weight * (F.l1_loss(dx(pred), dx(target)) + F.l1_loss(dy(pred), dy(target)))
    return loss


def train_midas(midas, cfg: MidasTraining, seed: int, checkpoint: Path | None = None) -> Trainer:
    """Train `midas` (modules.ldm.midas.MiDaSInference) in place on the scenes; returns the trainer."""
    midas.requires_grad_(True)
    trainer = Trainer(
        modules={"midas": midas},
        optimizers={"midas": OptimizerSpec(list(midas.parameters()), cfg.lr, (0.9, 0.99), cfg.weight_decay,
                                           warmup_steps=cfg.warmup_steps, cosine_to=0.05, grad_clip=1.0)},
        total_steps=cfg.steps, seed=seed, checkpoint=checkpoint, desc="depth estimator",
    )
    net_size = midas.net_size

    def step_fn(step, rng, gen):
        images, depth, _, _ = scenes.batch(rng, cfg.batch_size, cfg.image_size)
        x = prepare_midas_input(torch.from_numpy(images), net_size)
        pred = midas(x)
        target = torch.from_numpy(depth)
        if pred.shape[-2:] != target.shape[-2:]:  # the estimator's own size differs from the picture's
            target = F.interpolate(target, size=pred.shape[-2:], mode="bilinear", align_corners=False)
        loss = depth_loss(pred, target, cfg.gradient_weight)
        return {"midas": loss}, {"loss": loss.item()}

    trainer.run(step_fn)
    midas.eval().requires_grad_(False)
    return trainer
