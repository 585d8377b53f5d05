"""Which SD3 / SD3.5 variant a state dict is, from key shapes only (no weights are read).

    MMDiT depth, hidden, pos grid, qk-norm, MMDiT-X blocks  -> variant
    24, 1536, 192, no,  none                                -> sd3-medium
    38, 2432, 192, yes, none                                -> sd3.5-large (sd3.5-large-turbo: same weights
                                                               layout; told apart by "turbo" in the file name)
    24, 1536, 384, yes, 0-12                                -> sd3.5-medium
    anything else in the SD3 layout                          -> sd3 (config from the shapes: fine-tunes with
                                                               other sizes, tiny test and demo models)

The text encoders a file carries (`text_encoders.{clip_l,clip_g,t5xxl}.transformer.*`) are reported
too; the official SD3.5 files carry none, SD3 Medium comes with and without them.

BUILD_NAMES are the full-size layouts `sd_models.build_model(name)` builds (the files Stability AI
publishes, key for key).
"""
from __future__ import annotations

from typing import Mapping, Optional

from modules.ldm.mmdit import PREFIX, MMDiTConfig
from modules.ldm.sd3 import ENCODER_PREFIX

ENCODER_TITLES = {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5xxl": "T5-XXL"}

OFFICIAL = {  # (depth, hidden, grid, qk_norm, MMDiT-X blocks) -> variant
    (24, 1536, 192, False, ()): "sd3-medium",
    (38, 2432, 192, True, ()): "sd3.5-large",
    (24, 1536, 384, True, tuple(range(13))): "sd3.5-medium",
}
MMDIT_CONFIGS = {variant: MMDiTConfig(hidden_size=key[1], depth=key[0], num_heads=key[0], pos_embed_max_size=key[2],
                                      qk_norm=key[3], x_block_self_attn_layers=key[4]) for key, variant in OFFICIAL.items()}
MMDIT_CONFIGS["sd3.5-large-turbo"] = MMDIT_CONFIGS["sd3.5-large"]

BUILD_NAMES = {  # build_model name -> (variant, text encoders in the file)
    "sd3-medium": ("sd3-medium", ()),
    "sd3-medium-incl-clips": ("sd3-medium", ("clip_l", "clip_g")),
    "sd3-medium-incl-clips-t5xxl": ("sd3-medium", ("clip_l", "clip_g", "t5xxl")),
    "sd3.5-large": ("sd3.5-large", ()),
    "sd3.5-large-turbo": ("sd3.5-large-turbo", ()),
    "sd3.5-medium": ("sd3.5-medium", ()),
}


def is_sd3(shapes: Mapping[str, tuple]) -> bool:
    return PREFIX + "joint_blocks.0.x_block.attn.qkv.weight" in shapes


def is_bare_mmdit(shapes: Mapping[str, tuple]) -> bool:
    """An MMDiT without the `model.diffusion_model.` prefix (ComfyUI's diffusion_models files, GGUF exports)."""
    return "joint_blocks.0.x_block.attn.qkv.weight" in shapes


def variant(shapes: Mapping[str, tuple], filename: Optional[str] = None) -> str:
    cfg = MMDiTConfig.from_shapes(shapes)
    key = (cfg.depth, cfg.hidden_size, cfg.pos_embed_max_size, cfg.qk_norm, tuple(cfg.x_block_self_attn_layers))
    name = OFFICIAL.get(key, "sd3")
    if name == "sd3.5-large" and filename and "turbo" in filename.lower():
        return "sd3.5-large-turbo"
    return name


def encoders_in(shapes: Mapping[str, tuple]) -> tuple[str, ...]:
    return tuple(name for name, prefix in ENCODER_PREFIX.items() if any(k.startswith(prefix) for k in shapes))


def describe(title: str, encoders: tuple[str, ...]) -> str:
    """"SD3 Medium (incl. CLIP-L, CLIP-G)" / "SD3.5 Medium (no text encoders in the file)"."""
    if not encoders:
        return f"{title} (no text encoders in the file)"
    return f"{title} (incl. {', '.join(ENCODER_TITLES[e] for e in encoders)})"
