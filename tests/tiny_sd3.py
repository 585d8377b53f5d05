"""Tiny random-weight SD3 models and files for tests.

MMDiT: hidden 64, 2 joint blocks (2 heads of 32), pos grid 8 (latents up to 16x16), pooled input 128,
context width 128. VAE: ch 32, mult (1, 2) (factor 2), z 16, no quant convs. CLIP-L: width 64,
2 layers, the real 49408-token vocabulary (the real BPE tokenizer works); CLIP-G: width 64 with a
64-wide projection (L 64 + G 64 = the pooled 128). T5: d_model 128, 2 blocks, 2 heads of 16,
vocabulary 128 (a SentencePiece model trained on the fly: `train_t5_tokenizer`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from modules.ldm.autoencoder import AutoencoderConfig
from modules.ldm.clip_text import TextConfig
from modules.ldm.mmdit import MMDiTConfig
from modules.ldm.sd3 import ENCODER_PREFIX, SD3, SD3Config, build_sd3
from modules.ldm.sd3_text import CLIP_G_DEFAULTS, CLIP_L_DEFAULTS
from modules.ldm.t5 import T5Config
from modules.models import family as model_family

ENCODERS = ("clip_l", "clip_g", "t5xxl")
TOKENIZER_TEXT = [
    "a red circle on the left", "a blue square on the right", "a green triangle in the middle",
    "a photograph of an astronaut riding a horse", "a yellow circle", "an orange square", "a purple triangle",
    "the quick brown fox jumps over the lazy dog", "stable diffusion three", "a painting of a city at night",
]


def tiny_config(encoders=ENCODERS, qk_norm: bool = False, dual: tuple = ()) -> SD3Config:
    mmdit = MMDiTConfig(hidden_size=64, depth=2, num_heads=2, pos_embed_max_size=8, adm_in_channels=128,
                        context_in_features=128, qk_norm=qk_norm, x_block_self_attn_layers=dual)
    vae = AutoencoderConfig(embed_dim=16, z_channels=16, ch=32, ch_mult=(1, 2), num_res_blocks=1, use_quant_conv=False)
    return SD3Config(
        mmdit, vae,
        TextConfig(**{**CLIP_L_DEFAULTS, "width": 64, "layers": 2, "heads": 1}) if "clip_l" in encoders else None,
        TextConfig(**{**CLIP_G_DEFAULTS, "width": 64, "layers": 2, "heads": 1, "embed_dim": 64}) if "clip_g" in encoders else None,
        T5Config(vocab_size=128, d_model=128, d_kv=16, num_heads=2, d_ff=96, num_layers=2) if "t5xxl" in encoders else None)


def make_tiny_sd3(seed: int = 0, encoders=ENCODERS, qk_norm: bool = False, dual: tuple = (),
                  dtype: torch.dtype = torch.float32) -> SD3:
    """Seeded random weights (global RNG untouched); T5's linears get T5's own init (N(0, fan_in^-1/2),
    q also / sqrt(d_kv)), which keeps the tiny encoder well-conditioned as trained ones are."""
    config = tiny_config(encoders, qk_norm, dual)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_sd3(config, dtype=dtype, family=model_family.FAMILIES["sd3"])
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith("text_encoders.t5xxl") and p.dim() == 2 and "relative" not in name and "shared" not in name:
                    p.normal_(0, p.shape[1] ** -0.5 / (config.t5xxl.d_kv ** 0.5 if name.endswith("q.weight") else 1))
    return model


def state_dict_for_file(model: torch.nn.Module, parts=("model.", "first_stage_model.", *(f"text_encoders.{e}." for e in ENCODERS))) -> dict:
    """The model's state dict as a file stores it: contiguous copies (the T5 table under both names)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k.startswith(tuple(parts))}


def encoder_state_dict(model: SD3, name: str) -> dict:
    """One encoder as its separate file stores it (clip_l.safetensors etc.: no prefix)."""
    prefix = ENCODER_PREFIX[name]
    return {k[len(prefix):]: v for k, v in state_dict_for_file(model, (prefix,)).items()}


def write_checkpoint(path: Path, model: SD3, encoders=()) -> Path:
    """A single-file checkpoint with MMDiT + VAE + the given encoders (as their prefixes)."""
    parts = ("model.", "first_stage_model.", *(f"text_encoders.{e}." for e in encoders))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state_dict_for_file(model, parts), str(path))
    return path


def write_encoder(path: Path, model: SD3, name: str, dtype: torch.dtype | None = None) -> Path:
    sd = encoder_state_dict(model, name)
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def train_t5_tokenizer(folder: Path, vocab_size: int = 60) -> Path:
    """A tiny SentencePiece unigram model with T5's special ids (pad 0, </s> 1, unk 2, no BOS)."""
    import sentencepiece

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "corpus.txt"
    text.write_text("\n".join(TOKENIZER_TEXT * 3))
    sentencepiece.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / "spiece"), vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        minloglevel=2)
    text.unlink()
    (folder / "spiece.vocab").unlink()
    return folder / "spiece.model"
