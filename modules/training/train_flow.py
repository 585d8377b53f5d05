"""Rectified-flow training of an SD3 model: MMDiT and text encoders together, on a frozen VAE's latents.

The objective of Esser et al. 2024 ("Scaling Rectified Flow Transformers", sec. 2 and 3.1):
    z_t = (1 - t) z_0 + t eps            the straight path from data (t = 0) to noise (t = 1)
    v   = eps - z_0                       its velocity, what the network predicts at model time 1000 t
    L   = E || v_theta(z_t, t, c) - v ||^2
with t drawn from the logit-normal distribution, t = sigmoid(u), u ~ N(m, s^2) (eq. 19; m = 0, s = 1
was their best rectified-flow variant): more training where the path is hardest to predict, the
middle, and little at the ends, where the velocity is nearly the noise (t -> 0) or the data mean (t -> 1).
Sampling (the app's flow denoiser, or evaluate_sd3 here) integrates dz/dt = v from t = 1 to 0.

The text encoders (tiny CLIP-L and CLIP-G) start random and learn with the MMDiT, as the v1 demo's
text encoder does (train_diffusion): the vocabulary is a few words, learnt jointly. A share of empty
captions (the data's) trains the unconditional prediction classifier-free guidance needs; SD3's
negative prompt is the encoding of "", so empty captions, not zeroed conditioning, are the right drop.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from modules.ldm.mmdit import attention, timestep_embedding
from modules.ldm.t5_tokenizer import MIN_LENGTH

from .trainer import CaptionedSource, Trainer, ema_evaluation, joint_trainer

log = logging.getLogger(__name__)

@dataclass
class FlowTraining:
    steps: int = 3000
    batch_size: int = 32
    image_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    ema_decay: float = 0.995
    logit_mean: float = 0.0  # m of the logit-normal timestep density
    logit_std: float = 1.0  # s
    paired: bool = True  # the batch's halves are contrast pairs: same noise and time for both
    eval_every: int = 0  # steps between evaluations (0: never)


def trainable(model) -> dict[str, nn.Module]:
    """What this stage trains, by checkpoint prefix: the MMDiT and the text encoders."""
    return {"mmdit": model.model.diffusion_model, "text": model.text_encoders}


@torch.no_grad()
def init_mmdit(mmdit: nn.Module) -> None:
    """DiT's initialisation (Peebles & Xie 2023, sec. 3.1 "adaLN-Zero"): Xavier-uniform linear layers
    with zero biases, N(0, 0.02) for the timestep / pooled-text MLPs, and zero for every adaLN
    modulation and the final projection, so each block starts as the identity and the network's
    first output is zero. (A freshly built MMDiT has torch's default init; this trains much faster.)"""
    for module in mmdit.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    proj = mmdit.x_embedder.proj
    nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
    nn.init.zeros_(proj.bias)
    for embedder in (mmdit.t_embedder, mmdit.y_embedder):
        nn.init.normal_(embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(embedder.mlp[2].weight, std=0.02)
    for block in mmdit.joint_blocks:
        for stream in (block.context_block, block.x_block):
            nn.init.zeros_(stream.adaLN_modulation[-1].weight)
            nn.init.zeros_(stream.adaLN_modulation[-1].bias)
    nn.init.zeros_(mmdit.final_layer.adaLN_modulation[-1].weight)
    nn.init.zeros_(mmdit.final_layer.adaLN_modulation[-1].bias)
    nn.init.zeros_(mmdit.final_layer.linear.weight)
    nn.init.zeros_(mmdit.final_layer.linear.bias)


def logit_normal(n: int, generator: torch.Generator | None, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """n times in (0, 1) with logit(t) ~ N(mean, std^2) (Esser et al. 2024, eq. 19)."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator))


def conditioning(model, captions: list[str]) -> dict:
    """get_learned_conditioning with gradients (that one is no_grad, for inference)."""
    context, pooled = model.text_encoders(captions)
    return {"crossattn": context, "vector": pooled}


def velocity(model, z_t: torch.Tensor, t: torch.Tensor, cond: dict) -> torch.Tensor:
    """model.apply_model(z_t, 1000 t, cond), computed with the T5 part of the context folded when it is
    SD3's zero padding (no T5): the same numbers for a little over half the tokens.

    Without T5 the context is [77 CLIP tokens, 77 zero tokens] (sd3_text). The zero tokens enter as
    one vector (context_embedder's bias), get the same modulation and so stay equal through every
    block: 77 equal keys and values in the joint attention count as one with 77 times the weight,
    i.e. one token whose attention logit is raised by log 77, and the outputs of equal queries are
    equal. Training on the 78-token context with that bias is the 154-token computation, ~40% faster
    for the tiny demo, where the 16 image tokens are the fewest (tests/test_demo_sd3.py checks it
    against apply_model)."""
    context = cond["crossattn"]
    mmdit = model.model.diffusion_model
    p = mmdit.config.patch_size
    if model.text_encoders.uses_t5 or z_t.shape[-2] % p or z_t.shape[-1] % p:
        return model.apply_model(z_t, 1000 * t, cond)
    n_clip = context.shape[1] - MIN_LENGTH  # the zero part: the last MIN_LENGTH tokens
    bias = torch.zeros(1, n_clip + 1 + (z_t.shape[-2] // p) * (z_t.shape[-1] // p), dtype=z_t.dtype, device=z_t.device)
    bias[:, n_clip] = math.log(MIN_LENGTH)  # [1, keys]: broadcast over batch, heads and queries
    return _folded_forward(mmdit, z_t, 1000 * t, cond["vector"], context[:, :n_clip + 1], bias)


def _folded_forward(mmdit, x, t, y, context, key_bias):
    """MMDiT.forward (modules/ldm/mmdit.py) with an additive bias on the joint attention's keys;
    x's sides must be multiples of the patch size."""
    p = mmdit.config.patch_size
    h, w = x.shape[-2] // p, x.shape[-1] // p
    tokens = mmdit.x_embedder(x) + mmdit.cropped_pos_embed(h, w)
    c = mmdit.t_embedder(timestep_embedding(t, mmdit.config.frequency_embedding_size)) + mmdit.y_embedder(y)
    ctx = mmdit.context_embedder(context)
    n_ctx = ctx.shape[1]
    for block in mmdit.joint_blocks:  # JointBlock.forward with the biased attention
        ctx_qkv, _, ctx_mods = block.context_block.pre_attention(ctx, c)
        x_qkv, x_qkv2, x_mods = block.x_block.pre_attention(tokens, c)
        q, k, v = (torch.cat([a, b], dim=1).transpose(1, 2) for a, b in zip(ctx_qkv, x_qkv, strict=True))
        joint = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias).transpose(1, 2).flatten(2)
        attn2 = attention(*x_qkv2) if x_qkv2 is not None else None
        tokens_out = block.x_block.post_attention(tokens, joint[:, n_ctx:], attn2, x_mods)
        if not block.context_block.pre_only:
            ctx = block.context_block.post_attention(ctx, joint[:, :n_ctx], None, ctx_mods)
        tokens = tokens_out
    return mmdit.unpatchify(mmdit.final_layer(tokens, c), h, w)


def flow_loss(model, z0: torch.Tensor, cond: dict, generator: torch.Generator | None = None,
              shared_pairs: bool = False, logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """Mean squared error of the predicted velocity at logit-normal times, one per sample.

    z0: model latents [B, 16, h, w] (get_first_stage_encoding); shared_pairs: samples i and i + B/2
    get the same time and noise (contrast pairs)."""
    n = z0.shape[0] // 2 if shared_pairs else z0.shape[0]
    t = logit_normal(n, generator, logit_mean, logit_std)
    noise = torch.randn((n, *z0.shape[1:]), generator=generator)
    if shared_pairs:
        t, noise = t.repeat(2), noise.repeat(2, 1, 1, 1)
    t, noise = t.to(z0.device), noise.to(z0.device, z0.dtype)
    t_ = t.view(-1, 1, 1, 1)
    z_t = (1 - t_) * z0 + t_ * noise
    v = velocity(model, z_t, t, cond)
    return F.mse_loss(v.float(), (noise - z0).float())


def flow_trainer(model, cfg: FlowTraining, seed: int, checkpoint: Path | None = None) -> Trainer:
    """The trainer over the MMDiT and the text encoders (one AdamW, EMA of both), resumed from
    `checkpoint` when it exists."""
    return joint_trainer(trainable(model), cfg, seed, checkpoint, "flow", "rectified flow")


def train_flow(model, cfg: FlowTraining, seed: int, data: CaptionedSource, checkpoint: Path | None = None,
               evaluate: Callable[[object, int], None] | None = None) -> Trainer:
    """Train `model` (an SD3 whose VAE is trained) in place on `data` (with cfg.paired, the batch's halves
    are pairs - sd3_shapes.batch's contrast pairs - that share noise and time); evaluate(model with EMA
    weights, step) every cfg.eval_every steps."""
    model.first_stage_model.eval().requires_grad_(False)
    nets = trainable(model)
    for net in nets.values():
        net.requires_grad_(True)
    trainer = flow_trainer(model, cfg, seed, checkpoint)

    def step_fn(step, rng, gen):
        images, captions = data(rng, cfg.batch_size, cfg.image_size)
        with torch.no_grad():
            z0 = model.get_first_stage_encoding(model.encode_first_stage(torch.from_numpy(images)), gen)
        loss = flow_loss(model, z0, conditioning(model, captions), gen, cfg.paired, cfg.logit_mean, cfg.logit_std)
        return {"flow": loss}, {"loss": loss.item()}

    trainer.run(step_fn, ema_evaluation(model, trainer, evaluate, cfg.eval_every))
    return trainer
