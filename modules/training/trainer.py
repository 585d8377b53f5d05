"""A small training loop: optimizers, warm-up, grad clipping, EMA, progress bar, resumable checkpoints.

The caller gives a `step_fn(step, rng, generator) -> (losses, log)` where `losses` maps optimizer
names to the loss each one minimises (in order; e.g. {"ae": ..., "disc": ...}) and `log` holds
floats for the progress bar. Randomness inside a step comes only from `rng` (numpy) and `generator`
(torch), both seeded from (seed, step): a resumed run sees exactly the batches and noise it would
have seen without the interruption, and the same seed gives the same model.

Checkpoints hold modules, EMA copies, optimizer states and the step; they are written atomically
(temp file + rename) every `save_every_s` seconds and at the end, so a kill loses minutes at most.
"""
from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from modules.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

StepFn = Callable[[int, np.random.Generator, torch.Generator], tuple[dict[str, torch.Tensor | None], dict]]


def ema_multi_avg_fn(decay: float):
    """EMA update for AveragedModel with LDM's warm-up (LitEma): the decay is
    min(decay, (1 + n) / (10 + n)) after n updates, so a short run's average forgets the random
    init. Integer buffers (position_ids) are copied, never averaged."""

    @torch.no_grad()
    def update(ema_params, params, num_averaged) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        if torch.is_floating_point(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1 - d)
        else:
            for e, p in zip(ema_params, params, strict=True):
                e.copy_(p)

    return update


@dataclass
class OptimizerSpec:
    params: list[nn.Parameter]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0  # linear warm-up from 0 (the LDM configs' LambdaLinearScheduler idea)
    cosine_to: float | None = None  # if set, cosine decay to lr * cosine_to at the last step
    grad_clip: float | None = 1.0  # max global grad norm of these params (None: no clipping)


@dataclass
class Trainer:
    modules: dict[str, nn.Module]  # everything whose weights are checkpointed
    optimizers: dict[str, OptimizerSpec]
    total_steps: int
    seed: int = 0
    ema: dict[str, float] = field(default_factory=dict)  # module name -> EMA decay
    checkpoint: Path | None = None
    save_every_s: float = 180.0
    desc: str = "train"

    def __post_init__(self):
        self.step = 0
        self.opts = {name: torch.optim.AdamW(s.params, lr=s.lr, betas=s.betas, weight_decay=s.weight_decay)
                     for name, s in self.optimizers.items()}
        self.ema_models = {name: AveragedModel(self.modules[name], multi_avg_fn=ema_multi_avg_fn(decay),
                                               use_buffers=True)
                           for name, decay in self.ema.items()}
        if self.checkpoint is not None and Path(self.checkpoint).is_file():
            self.load(self.checkpoint)

    def lr_factor(self, spec: OptimizerSpec, step: int) -> float:
        factor = min(1.0, (step + 1) / spec.warmup_steps) if spec.warmup_steps else 1.0
        if spec.cosine_to is not None:
            progress = step / max(1, self.total_steps - 1)
            factor *= spec.cosine_to + (1 - spec.cosine_to) * 0.5 * (1 + math.cos(math.pi * progress))
        return factor

    def run(self, step_fn: StepFn, callback: Callable[[int], None] | None = None) -> None:
        """Train to total_steps; `callback(step)` runs after every step (e.g. a periodic evaluation)."""
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.desc, dynamic_ncols=True,
                   mininterval=5.0)
        last_save = time.monotonic()
        for m in self.modules.values():
            m.train()
        while self.step < self.total_steps:
            rng = np.random.default_rng([self.seed, self.step])
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
            losses, info = step_fn(self.step, rng, gen)
            self._apply(losses)
            for name, ema in self.ema_models.items():
                ema.update_parameters(self.modules[name])
            self.step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in info.items()}, refresh=False)
            if callback is not None:
                callback(self.step)
            if self.checkpoint is not None and time.monotonic() - last_save > self.save_every_s:
                self.save(self.checkpoint)
                last_save = time.monotonic()
        bar.close()
        if self.checkpoint is not None:
            self.save(self.checkpoint)

    def _apply(self, losses: dict[str, torch.Tensor | None]) -> None:
        for name, loss in losses.items():
            if loss is None:
                continue
            opt, spec = self.opts[name], self.optimizers[name]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if spec.grad_clip is not None:
                nn.utils.clip_grad_norm_(spec.params, spec.grad_clip)
            for group in opt.param_groups:
                group["lr"] = spec.lr * self.lr_factor(spec, self.step)
            opt.step()

    def averaged(self, name: str) -> nn.Module:
        """The EMA copy of a module when it has one, else the module itself."""
        return self.ema_models[name].module if name in self.ema_models else self.modules[name]

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "seed": self.seed,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.opts.items()},
            "ema": {k: m.state_dict() for k, m in self.ema_models.items()},
        }

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        atomic_write_bytes(path, buf.getvalue())
        log.info("saved %s at step %d", path, self.step)

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["seed"] != self.seed:
            raise ValueError(f"checkpoint {path} was trained with seed {state['seed']}, not {self.seed}; "
                             "use the same seed or another checkpoint path")
        for k, sd in state["modules"].items():
            self.modules[k].load_state_dict(sd)
        for k, sd in state["optimizers"].items():
            self.opts[k].load_state_dict(sd)
        for k, sd in state["ema"].items():
            self.ema_models[k].load_state_dict(sd)
        self.step = state["step"]
        log.info("resumed %s at step %d", path, self.step)


class swapped_in_ema:
    """Context manager: the trainer's networks (the model's trained parts) hold their EMA weights, in
    eval mode, inside the block; their trained weights and train mode come back after it."""

    def __init__(self, model, trainer: Trainer):
        self.model, self.trainer = model, trainer

    def __enter__(self):
        self.saved = {}
        for name, net in self.trainer.modules.items():
            self.saved[name] = {k: v.clone() for k, v in net.state_dict().items()}
            net.load_state_dict(self.trainer.averaged(name).state_dict())
            net.eval()
        return self.model

    def __exit__(self, *exc):
        for name, net in self.trainer.modules.items():
            net.load_state_dict(self.saved[name])
            net.train()
        return False


# (rng, n, size) -> (images float [-1, 1] numpy [n, 3, size, size], captions): a trainer's pictures
CaptionedSource = Callable[[np.random.Generator, int, int], tuple[np.ndarray, list[str]]]


def joint_trainer(nets: dict[str, nn.Module], cfg, seed: int, checkpoint: Path | None, optimizer: str,
                  desc: str) -> Trainer:
    """One AdamW over all of `nets` (cfg.lr after cfg.warmup_steps, cosine to 5% at cfg.steps, gradients
    clipped at 1) and an EMA of each (cfg.ema_decay), resumed from `checkpoint` when it exists.
    `optimizer` names the optimizer in the checkpoint."""
    params = [p for net in nets.values() for p in net.parameters()]
    return Trainer(
        modules=nets,
        optimizers={optimizer: OptimizerSpec(params, cfg.lr, (0.9, 0.99), cfg.weight_decay,
                                             warmup_steps=cfg.warmup_steps, cosine_to=0.05, grad_clip=1.0)},
        total_steps=cfg.steps, seed=seed, ema={name: cfg.ema_decay for name in nets},
        checkpoint=checkpoint, desc=desc,
    )


def ema_evaluation(model, trainer: Trainer, evaluate: Callable[[object, int], None] | None,
                   every: int) -> Callable[[int], None]:
    """Trainer.run's callback: evaluate(model with its EMA weights, step) every `every` steps (0: never)."""
    def callback(step: int) -> None:
        if evaluate is not None and every and step % every == 0:
            with swapped_in_ema(model, trainer):
                evaluate(model, step)
    return callback

