"""Re-create the built-in demo model from a seed: `python -m modules.training.demo`.

Stages (each resumable from its checkpoint in --workdir, so a killed run continues):
1. autoencoder: the KL autoencoder on synthetic shapes (L1 + KL; LPIPS if VGG weights exist);
2. decoder: the decoder alone on the now frozen latent space (L1 + KL + patch-GAN after half its steps);
3. diffusion: UNet and text encoder together on the encoder's latents (eps objective);
4. export: EMA weights -> fp16 safetensors in the SD-v1 layout + the yaml next to it;
5. inpaint: the diffusion stage's EMA weights fine-tuned into the 9-channel inpainting variant
   (train_inpaint), written as demo-inpainting.safetensors + yaml beside the demo.
Stages 2 and 3 depend only on stage 1, so they can run at the same time in two processes
(`--stage decoder` and `--stage diffusion`), then `--stage export` and `--stage inpaint`.

Time (one thread, `OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1`, the machine's other core busy),
measured for the shipped files: autoencoder 2.5 min (450 steps), decoder 1.7 min (400), diffusion
26.5 min (4000), inpaint 6.5 min (800): about 37 minutes; a busier machine takes up to 3x that.
Colour is learned after ~600 diffusion steps, left/right after ~1400 (with mirror pairs; see
train_diffusion), shape last: 16/30 test images right at 2600 steps, 30/30 at 4000.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import time
from pathlib import Path

import torch

from .export import export
from .train_autoencoder import AutoencoderTraining, init_low_logvar, latent_scale_factor, train_autoencoder
from .train_diffusion import (
    DiffusionTraining,
    diffusion_trainer,
    ema_state_dict,
    train_diffusion,
)
from .train_inpaint import EXTRA_CHANNELS, inpainting_conditioning, inpainting_unet_state, random_masks
from .trainer import Trainer, swapped_in_ema

log = logging.getLogger("demo")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "models" / "Stable-diffusion" / "demo"
IMAGE_SIZE = 32

# first_stage_config.params of the demo yaml: f4 (32x32 -> 8x8x4) with 64 channels. Measured: an
# f8 64x64 autoencoder with 32-channel levels costs the same per image but GroupNorm(32) then
# normalises every channel alone per image, which erases absolute colours (red came back orange,
# backgrounds gray); 64 channels give 2 per group and keep them. 64 channels at 64x64 cost 4x.
FIRST_STAGE_PARAMS = {
    "embed_dim": 4,
    "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": IMAGE_SIZE, "in_channels": 3, "out_ch": 3,
        "ch": 64, "ch_mult": [1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
    },
}

# 8x8 latents, three levels (8x8, 4x4, 2x2), cross-attention at all. Measured: with two levels
# (8x8, 4x4) the model learned colour in 600 steps but never left/right (identical images for both
# words after 1200 steps): attention has no position signal, and at 2x2 every cell is a border cell.
UNET_PARAMS = {
    "image_size": 8, "in_channels": 4, "out_channels": 4, "model_channels": 64,
    "attention_resolutions": [1, 2, 4], "num_res_blocks": 1, "channel_mult": [1, 1, 2], "num_heads": 4,
    "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 64,
    "use_checkpoint": False, "legacy": False,
}
# CLIP ViT-L/14's layout at width 64 with 2 layers; the vocabulary stays 49408 (the real tokenizer)
TEXT_PARAMS = {"width": 64, "layers": 2, "heads": 2}


def demo_config(scale_factor: float, parameterization: str = "eps", unet_overrides: dict | None = None) -> dict:
    """The demo model's yaml, in the original LDM schema (configs/v1-inference.yaml, tiny sizes)."""
    return {"model": {
        "base_learning_rate": 1.0e-3,
        "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
        "params": {
            "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "log_every_t": 200,
            "timesteps": 1000, "first_stage_key": "jpg", "cond_stage_key": "txt",
            "image_size": IMAGE_SIZE // 4, "channels": 4, "cond_stage_trainable": True,
            "conditioning_key": "crossattn", "monitor": "val/loss_simple_ema",
            "scale_factor": round(scale_factor, 5), "use_ema": False, "parameterization": parameterization,
            "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
                            "params": {**UNET_PARAMS, **(unet_overrides or {})}},
            "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL",
                                   "params": {**FIRST_STAGE_PARAMS, "monitor": "val/rec_loss",
                                              "lossconfig": {"target": "torch.nn.Identity"}}},
            "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
                                  "params": TEXT_PARAMS},
        },
    }}


def build_autoencoder(seed: int):
    from modules.ldm.autoencoder import AutoencoderConfig, AutoencoderKL

    torch.manual_seed(seed)
    ae = AutoencoderKL(AutoencoderConfig.from_params(FIRST_STAGE_PARAMS))
    return ae


def stage_autoencoder(args) -> torch.nn.Module:
    ae = build_autoencoder(args.seed)
    cfg = AutoencoderTraining(steps=args.ae_steps, image_size=IMAGE_SIZE, vgg_path=args.vgg)
    cfg.loss.disc_start = args.ae_steps  # the GAN joins in the decoder stage
    init_low_logvar(ae, cfg.initial_logvar)
    t0 = time.monotonic()
    train_autoencoder(ae, cfg, args.seed, args.workdir / "autoencoder.pt")
    log.info("autoencoder stage: %.1f min", (time.monotonic() - t0) / 60)
    return ae


def stage_decoder(args) -> torch.nn.Module:
    ae = build_autoencoder(args.seed)
    ae.load_state_dict(trained_autoencoder_state(args.workdir, decoder=False))
    cfg = AutoencoderTraining(steps=args.decoder_steps, image_size=IMAGE_SIZE, vgg_path=args.vgg,
                              train_encoder=False, warmup_steps=20)
    cfg.loss.disc_start = args.decoder_steps // 2
    t0 = time.monotonic()
    train_autoencoder(ae, cfg, args.seed + 10, args.workdir / "decoder.pt")
    log.info("decoder stage: %.1f min", (time.monotonic() - t0) / 60)
    return ae


def trained_autoencoder_state(workdir: Path, decoder: bool = True) -> dict:
    """The autoencoder after stage 1, or with decoder=True after stage 2 when that has a checkpoint
    (same encoder: stage 2 keeps it frozen)."""
    path = workdir / "autoencoder.pt"
    if decoder and (workdir / "decoder.pt").is_file():
        path = workdir / "decoder.pt"
    elif decoder:
        log.warning("no decoder-stage checkpoint in %s: using the stage-1 decoder", workdir)
    if not path.is_file():
        raise ValueError(f"no trained autoencoder at {path}: run the autoencoder stage first")
    return torch.load(path, map_location="cpu", weights_only=True)["modules"]["ae"]


def build_demo_model(args):
    """The full LatentDiffusion with the trained autoencoder and a seeded random UNet / text encoder."""
    from modules.ldm.config import build_from_config

    ae = build_autoencoder(args.seed)
    ae.load_state_dict(trained_autoencoder_state(args.workdir))
    scale_factor = latent_scale_factor(ae, args.seed, image_size=IMAGE_SIZE)
    overrides = {}
    if args.channel_mult:
        overrides["channel_mult"] = [int(v) for v in args.channel_mult.split(",")]
        overrides["attention_resolutions"] = [2 ** i for i in range(len(overrides["channel_mult"]))]
    config = demo_config(scale_factor, unet_overrides=overrides)
    torch.manual_seed(args.seed + 2)
    model = build_from_config(config)
    model.first_stage_model.load_state_dict(ae.state_dict())
    return model, config


def quick_eval(model, step: int) -> None:
    """A few seeds of the test prompts with the real sampler, logged during training."""
    from .evaluate import measure, standard_prompts, summary

    t0 = time.monotonic()
    results = measure(model, standard_prompts(), list(range(4)), steps=15)
    log.info("step %d: %s (eval %.0f s)", step, {k: round(v, 2) for k, v in summary(results).items()},
             time.monotonic() - t0)


def stage_diffusion(args):
    model, config = build_demo_model(args)
    cfg = DiffusionTraining(steps=args.unet_steps, image_size=IMAGE_SIZE, eval_every=args.eval_every)
    t0 = time.monotonic()
    trainer = train_diffusion(model, cfg, args.seed, args.workdir / "diffusion.pt", quick_eval)
    log.info("diffusion stage: %.1f min", (time.monotonic() - t0) / 60)
    return model, config, trainer


def restored_trainer(model, checkpoint: Path, steps: int, seed: int) -> Trainer:
    """A trainer over the model's trained networks with the state (EMA included) of `checkpoint`."""
    if not checkpoint.is_file():
        raise ValueError(f"no checkpoint at {checkpoint}: run the stage that writes it first")
    return diffusion_trainer(model, DiffusionTraining(steps=steps), seed, checkpoint)


def export_ema(model, config: dict, trainer: Trainer, path: Path, seed: int) -> None:
    with swapped_in_ema(model, trainer):
        export(model, config, path, metadata={"seed": str(seed), "steps": str(trainer.step),
                                              "trained_by": "python -m modules.training.demo"})
    log.info("wrote %s (%.1f MB) and %s, step %d", path, path.stat().st_size / 1e6, path.with_suffix(".yaml"),
             trainer.step)


def stage_export(args):
    """EMA weights of the diffusion checkpoint + the latest decoder -> demo.safetensors + demo.yaml."""
    model, config = build_demo_model(args)
    trainer = restored_trainer(model, args.workdir / "diffusion.pt", args.unet_steps, args.seed)
    export_ema(model, config, trainer, args.out / "demo.safetensors", args.seed)


def inpainting_config(config: dict) -> dict:
    """The demo yaml -> its inpainting variant (what v1-inpainting-inference.yaml changes in v1-inference.yaml)."""
    config = copy.deepcopy(config)
    model = config["model"]
    model["target"] = "ldm.models.diffusion.ddpm.LatentInpaintDiffusion"
    params = model["params"]
    params["conditioning_key"] = "hybrid"
    params["finetune_keys"] = None
    params.pop("use_ema", None)
    params["unet_config"]["params"]["in_channels"] = 4 + EXTRA_CHANNELS
    return config


def build_inpainting_model(args):
    """The 9-channel model, initialised from the txt2img demo's EMA weights (extra input channels zero)."""
    from modules.ldm.config import build_from_config

    base, config = build_demo_model(args)
    trainer = restored_trainer(base, args.workdir / "diffusion.pt", args.unet_steps, args.seed)
    state = ema_state_dict(base, trainer)
    unet = {k.removeprefix("model.diffusion_model."): v for k, v in state.items() if k.startswith("model.diffusion_model.")}
    state.update({f"model.diffusion_model.{k}": v for k, v in inpainting_unet_state(unet).items()})
    config = inpainting_config(config)
    model = build_from_config(config)
    model.load_state_dict(state, strict=True)
    return model, config


def stage_inpaint(args):
    model, config = build_inpainting_model(args)
    cfg = DiffusionTraining(steps=args.inpaint_steps, image_size=IMAGE_SIZE, lr=5e-4, warmup_steps=50,
                            mirror_pairs=False)
    f = model.vae_scale_factor

    def image_conditioning(m, images, rng):
        masks = torch.from_numpy(random_masks(rng, images.shape[0], IMAGE_SIZE, grid=f))
        return inpainting_conditioning(m, images, masks)

    t0 = time.monotonic()
    checkpoint = args.workdir / "inpaint.pt"
    trainer = train_diffusion(model, cfg, args.seed + 20, checkpoint, image_conditioning=image_conditioning)
    log.info("inpaint stage: %.1f min", (time.monotonic() - t0) / 60)
    export_ema(model, config, trainer, args.out / "demo-inpainting.safetensors", args.seed)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", choices=["autoencoder", "decoder", "diffusion", "export", "inpaint", "all"],
                   default="all")
    p.add_argument("--workdir", type=Path, default=ROOT / "tmp" / "demo-training",
                   help="checkpoints for resuming (default: tmp/demo-training)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where demo.safetensors + demo.yaml go")
    p.add_argument("--ae-steps", type=int, default=450)
    p.add_argument("--decoder-steps", type=int, default=400)
    p.add_argument("--unet-steps", type=int, default=4000)
    p.add_argument("--inpaint-steps", type=int, default=800)
    p.add_argument("--channel-mult", default="", help="UNet levels, e.g. 1,2 (default: the demo's 1,1,2)")
    p.add_argument("--eval-every", type=int, default=200, help="steps between quick evaluations (0: none)")
    p.add_argument("--vgg", type=Path, default=ROOT / "models" / "VGG" / "vgg16-397923af.pth",
                   help="torchvision VGG16 weights for the LPIPS loss (skipped when absent)")
    return p.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.stage in ("autoencoder", "all"):
        stage_autoencoder(args)
    if args.stage in ("decoder", "all"):
        stage_decoder(args)
    if args.stage in ("diffusion", "all"):
        stage_diffusion(args)
    if args.stage in ("export", "all"):
        stage_export(args)
    if args.stage in ("inpaint", "all"):
        stage_inpaint(args)


if __name__ == "__main__":
    main()
