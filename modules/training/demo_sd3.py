"""Re-create the SD3 demo model from a seed: `python -m modules.training.demo_sd3`.

A tiny model in Stable Diffusion 3's layout - MMDiT, a 16-channel VAE without quant convs, CLIP-L
and CLIP-G, no T5 - trained from scratch on sd3_shapes (the v1 demo's shapes plus sizes and
background colours) and written as one fp16 safetensors file in the official single-file layout
(model.diffusion_model.*, first_stage_model.*, text_encoders.clip_{l,g}.transformer.*), which the
app detects and builds from its shapes like any SD3 checkpoint.

Stages (each resumable from its checkpoint in --workdir, so a killed run continues):
1. autoencoder: the 16-channel VAE on the pictures (the v1 demo's recipe: L1 + KL), then its latent
   space moved so that SD3's fixed latent scale and shift (1.5305, 0.0609) give zero mean, unit
   variance (see normalize_latents);
2. decoder: the decoder alone on the now frozen latent space (L1 + KL + patch-GAN after half its steps);
3. flow: MMDiT and both CLIPs together, rectified flow with logit-normal times (train_flow);
4. export: EMA weights -> models/Stable-diffusion/demo-sd3/demo-sd3.safetensors.
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from modules.ldm.autoencoder import AutoencoderConfig, AutoencoderKL
from modules.ldm.clip_text import TextConfig
from modules.ldm.mmdit import MMDiTConfig
from modules.ldm.sd3 import SD3, SD3Config, build_sd3
from modules.ldm.sd3_text import CLIP_G_DEFAULTS, CLIP_L_DEFAULTS
from modules.models import family as model_family
from modules.models.sd3_checkpoint import TRAINED_ENCODERS_KEY

from . import sd3_shapes
from .train_autoencoder import AutoencoderTraining, init_low_logvar, train_autoencoder
from .train_flow import FlowTraining, flow_trainer, init_mmdit, train_flow
from .trainer import swapped_in_ema

log = logging.getLogger("demo-sd3")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "models" / "Stable-diffusion" / "demo-sd3"
FILE_NAME = "demo-sd3.safetensors"
IMAGE_SIZE = 32

# f4 (32x32 -> 8x8x16), 64 channels as the v1 demo's autoencoder (GroupNorm(32) keeps 2 channels a
# group, which keeps absolute colours); no quant convs, as SD3's VAE
VAE = AutoencoderConfig(embed_dim=16, z_channels=16, ch=64, ch_mult=(1, 1, 1), num_res_blocks=1,
                        attn_resolutions=(), resolution=IMAGE_SIZE, use_quant_conv=False)
# 8x8 latents -> 4x4 tokens of 2x2 patches. SD3's rule heads = depth (head width = hidden / depth) is
# what detection assumes without qk-norm; the sin-cos table covers 16x16 tokens (images up to 128 px)
MMDIT = dict(hidden_size=128, depth=4, pos_embed_max_size=16)
# CLIP-L / CLIP-G layouts at width 32 (the real 49408-token vocabulary: the real tokenizer works);
# context = L | G = 64 wide, pooled = L | G's projection = 64
TEXT_WIDTH, TEXT_LAYERS = 32, 3


def demo_config(hidden: int = MMDIT["hidden_size"], depth: int = MMDIT["depth"]) -> SD3Config:
    width = TEXT_WIDTH
    return SD3Config(
        MMDiTConfig(hidden_size=hidden, depth=depth, num_heads=depth, pos_embed_max_size=MMDIT["pos_embed_max_size"],
                    adm_in_channels=2 * width, context_in_features=2 * width),
        VAE,
        TextConfig(**{**CLIP_L_DEFAULTS, "width": width, "layers": TEXT_LAYERS, "heads": 1}),
        TextConfig(**{**CLIP_G_DEFAULTS, "width": width, "layers": TEXT_LAYERS, "heads": 1, "embed_dim": width}),
    )


def build_autoencoder(seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(VAE)


def stage_autoencoder(args) -> AutoencoderKL:
    ae = build_autoencoder(args.seed)
    cfg = AutoencoderTraining(steps=args.ae_steps, image_size=IMAGE_SIZE, vgg_path=args.vgg)
    cfg.loss.disc_start = args.ae_steps  # the GAN joins in the decoder stage
    init_low_logvar(ae, cfg.initial_logvar)
    t0 = time.process_time()
    train_autoencoder(ae, cfg, args.seed, args.workdir / "autoencoder.pt", images=sd3_shapes.images)
    normalize_latents(ae, sd3_shapes.images(np.random.default_rng(args.seed), 256, IMAGE_SIZE))
    torch.save(ae.state_dict(), args.workdir / "autoencoder-normalized.pt")
    log.info("autoencoder stage: %.1f CPU min", (time.process_time() - t0) / 60)
    return ae


@torch.no_grad()
def normalize_latents(ae: AutoencoderKL, images: np.ndarray, scale: float = 1.5305, shift: float = 0.0609) -> None:
    """Re-parametrise the latent space z -> a z + b (one a, b for all channels, as SD's single scale
    factor) so that the model latent (z' - shift) * scale of `images` has mean 0 and std 1.

    SD3's scale and shift are constants of the model family, so the tiny VAE adapts to them instead:
    the encoder's mean outputs become a * mean + b (its log-variance outputs + 2 log a), exactly; the
    decoder's conv_in takes (z' - b) / a, exact except where its 3x3 kernel meets the zero padding
    (the padding is zero in z', not in z): the decoder stage, run after this, trains that away."""
    mean = ae.encode(torch.from_numpy(images)).mode()
    a = 1.0 / (scale * float(mean.std()))
    b = shift - a * float(mean.mean())
    out, z = ae.encoder.conv_out, ae.config.z_channels
    out.weight[:z] *= a
    out.bias[:z] = a * out.bias[:z] + b
    out.bias[z:] += 2 * np.log(a)
    conv_in = ae.decoder.conv_in
    conv_in.bias -= conv_in.weight.sum(dim=(1, 2, 3)) * b / a
    conv_in.weight /= a


def stage_decoder(args) -> AutoencoderKL:
    ae = build_autoencoder(args.seed)
    ae.load_state_dict(_load(args.workdir / "autoencoder-normalized.pt", "autoencoder"))
    cfg = AutoencoderTraining(steps=args.decoder_steps, image_size=IMAGE_SIZE, vgg_path=args.vgg,
                              train_encoder=False, warmup_steps=20)
    cfg.loss.disc_start = args.decoder_steps // 2
    t0 = time.process_time()
    train_autoencoder(ae, cfg, args.seed + 10, args.workdir / "decoder.pt", images=sd3_shapes.images)
    log.info("decoder stage: %.1f CPU min", (time.process_time() - t0) / 60)
    return ae


def _load(path: Path, stage: str) -> dict:
    if not path.is_file():
        raise ValueError(f"no {stage} checkpoint at {path}: run the {stage} stage first")
    return torch.load(path, map_location="cpu", weights_only=True)


def trained_vae_state(workdir: Path) -> dict:
    """The VAE after the decoder stage (or the normalized stage-1 one when that has not run)."""
    if (workdir / "decoder.pt").is_file():
        return _load(workdir / "decoder.pt", "decoder")["modules"]["ae"]
    log.warning("no decoder-stage checkpoint in %s: using the stage-1 decoder", workdir)
    return _load(workdir / "autoencoder-normalized.pt", "autoencoder")


def build_demo_model(args) -> SD3:
    """The SD3 model with the trained VAE and a seeded, DiT-initialised MMDiT and random CLIPs."""
    torch.manual_seed(args.seed + 2)
    model = build_sd3(demo_config(args.hidden, args.depth), family=model_family.FAMILIES["sd3"])
    init_mmdit(model.model.diffusion_model)
    model.first_stage_model.load_state_dict(trained_vae_state(args.workdir))
    return model


def paired_shapes(contrasts: tuple[str, ...]):
    """The flow stage's data: contrast pairs that differ in one attribute of `contrasts`."""
    def source(rng: np.random.Generator, n: int, size: int):
        images, captions, _ = sd3_shapes.batch(rng, n, size, contrast_pairs=True, contrasts=contrasts)
        return images, captions
    return source


def quick_eval(model, step: int) -> None:
    """A few seeds of the test prompts with evaluate_sd3's sampler, logged during training."""
    from .evaluate_sd3 import measure, standard_prompts, summary

    t0 = time.process_time()
    results = measure(model, standard_prompts(), list(range(4)), steps=15)
    log.info("step %d: %s (eval %.0f CPU s)", step, {k: round(v, 2) for k, v in summary(results).items()},
             time.process_time() - t0)


def stage_flow(args):
    model = build_demo_model(args)
    cfg = FlowTraining(steps=args.flow_steps, image_size=IMAGE_SIZE, batch_size=args.batch_size, lr=args.lr,
                       eval_every=args.eval_every)
    t0 = time.process_time()
    source = paired_shapes(tuple(args.contrasts.split(",")))
    trainer = train_flow(model, cfg, args.seed, source, args.workdir / "flow.pt", quick_eval if args.eval_every else None)
    log.info("flow stage: %.1f CPU min (evaluations included)", (time.process_time() - t0) / 60)
    return model, trainer


def stage_export(args) -> Path:
    """EMA weights of the flow checkpoint + the trained VAE -> demo-sd3.safetensors (fp16)."""
    model = build_demo_model(args)
    checkpoint = args.workdir / "flow.pt"
    if not checkpoint.is_file():
        raise ValueError(f"no flow checkpoint at {checkpoint}: run the flow stage first")
    trainer = flow_trainer(model, FlowTraining(steps=args.flow_steps), args.seed, checkpoint)
    path = args.out / FILE_NAME
    with swapped_in_ema(model, trainer):
        tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    metadata = {"modelspec.title": "SD3 demo", "modelspec.resolution": f"{IMAGE_SIZE}x{IMAGE_SIZE}",
                TRAINED_ENCODERS_KEY: "clip_l,clip_g",  # no T5: the app does not suggest one
                "seed": str(args.seed), "steps": str(trainer.step),
                "trained_by": "python -m modules.training.demo_sd3"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)  # atomic: the app never sees a half-written model
    log.info("wrote %s (%.1f MB), step %d", path, path.stat().st_size / 1e6, trainer.step)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", choices=["autoencoder", "decoder", "flow", "export", "all"], default="all")
    p.add_argument("--workdir", type=Path, default=ROOT / "tmp" / "demo-sd3-training",
                   help="checkpoints for resuming (default: tmp/demo-sd3-training)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where {FILE_NAME} goes")
    p.add_argument("--ae-steps", type=int, default=1000)
    p.add_argument("--decoder-steps", type=int, default=600)
    p.add_argument("--flow-steps", type=int, default=4000)
    p.add_argument("--contrasts", default=",".join(sd3_shapes.CONTRASTS),
                   help=f"what the flow stage's contrast pairs differ in (any of {','.join(sd3_shapes.ALL_CONTRASTS)})")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=MMDIT["hidden_size"], help="MMDiT width")
    p.add_argument("--depth", type=int, default=MMDIT["depth"], help="MMDiT joint blocks (= heads)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between quick evaluations (0: none)")
    p.add_argument("--vgg", type=Path, default=ROOT / "models" / "VGG" / "vgg16-397923af.pth",
                   help="torchvision VGG16 weights for the LPIPS loss (skipped when absent)")
    return p.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(1)
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.stage in ("autoencoder", "all"):
        stage_autoencoder(args)
    if args.stage in ("decoder", "all"):
        stage_decoder(args)
    if args.stage in ("flow", "all"):
        stage_flow(args)
    if args.stage in ("export", "all"):
        stage_export(args)


if __name__ == "__main__":
    main()
