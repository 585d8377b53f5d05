"""Token merging (ToMe for SD, Bolya & Hoffman 2023, "Token Merging for Fast Stable Diffusion")
through the model patcher: A1111's "Token merging ratio" settings.

The merging itself is tomesd's (MIT, `tomesd.patch.compute_merge`, bipartite soft matching with one
destination token per 2x2 region). tomesd applies it by swapping the class of every transformer
block; here the same computation is attached with removable torch hooks instead:

    UNet pre-hook              remember the latent size (tomesd's "size")
    transformer block pre-hook  merge / unmerge functions from the block's input x (the metric)
    attn1 pre-hook / hook       attn1(m(norm1(x))) -> u(...), as tomesd's block with merge_attn only

A1111's arguments: merge the self-attention only (merge_attn True, cross-attention and MLP False),
only at the highest resolution (max_downsample 1), no random destination choice (use_rand False:
it "can cause issues with some samplers"). A ratio of 0 merges nothing (tomesd's r = 0).
"""
from __future__ import annotations

import torch
from tomesd.patch import compute_merge

from modules.models.patcher import ModelPatcher


def token_merging_patcher(model, ratio: float, max_downsample: int = 1, sx: int = 2, sy: int = 2,
                          use_rand: bool = False, unet: torch.nn.Module | None = None) -> ModelPatcher:
    """A ModelPatcher that merges `ratio` of the self-attention tokens (apply() / remove(), or `with`)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"token merging ratio must be in [0, 1), got {ratio}")
    info = {"size": None, "args": {"ratio": float(ratio), "max_downsample": max_downsample, "sx": sx,
                                   "sy": sy, "use_rand": use_rand, "generator": None, "merge_attn": True,
                                   "merge_crossattn": False, "merge_mlp": False}}
    current: dict[int, tuple] = {}  # id(attn1) -> (merge, unmerge) for the block running now
    patcher = ModelPatcher(model, unet)
    blocks = {name: m for name, m in patcher.modules().items()
              if _is_block_path(name) and hasattr(m, "attn1")}

    def remember_size(_unet, args):
        info["size"] = tuple(args[0].shape[2:4])

    def block_pre(block, args):
        m_a, _, _, u_a, _, _ = compute_merge(args[0], info)
        current[id(block.attn1)] = (m_a, u_a)

    def attn_pre(attn, args):
        merge, _ = current[id(attn)]
        return (merge(args[0]), *args[1:])

    def attn_post(attn, _args, output):
        return current.pop(id(attn))[1](output)

    patcher.add_forward_hooks("", pre=remember_size)
    for name in blocks:
        patcher.add_forward_hooks(name, pre=block_pre)
        patcher.add_forward_hooks(f"{name}.attn1", pre=attn_pre, post=attn_post)
    return patcher


def _is_block_path(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2] == "transformer_blocks" and parts[-1].isdigit()
