"""Re-create the shipped LDSR demo from a seed: `python -m modules.training.ldsr_demo`.

A tiny model in the layout of CompVis's bsr_sr (A1111's LDSR): a VQ-f4 first stage (3-channel latent,
8192 codes, VQModelInterface) and a UNet that sees [noisy latent, low-res RGB] (6 channels), trained
on the synthetic shapes scenes (sr_scenes: 128 px scenes and their 4x smaller bicubic copies).

Stages (each resumable from its checkpoint in --workdir; `--stage all` runs them in order):
1. vq:      the VQ-GAN (train_vq: L1 + codebook/commitment + patch-GAN, codebook seeding and restarts);
2. unet:    the concat-conditioned UNet on the frozen first stage (train_ldsr, eps objective, EMA);
3. decoder: the decoder alone on the frozen latent space, on larger canvases, plain L1 (PSNR counts the
            gray background as much as the shapes) and latents jittered by about the UNet's error, so
            sampled latents decode to clean flat colours; needs only stage 1 (the latents do not change);
4. export:  EMA UNet + first stage -> models/LDSR/demo/model.safetensors (fp16) + project.yaml
            (the original yaml schema; `use_ema: false` because the file's UNet weights are the EMA ones);
5. eval:    PSNR of the 4x output against the ground truth on held-out scenes, next to bicubic.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .export import checkpoint_tensors
from .train_ldsr import LDSRTraining, ldsr_trainer, train_ldsr
from .train_vq import VQTraining, latent_std, train_vq

log = logging.getLogger("ldsr_demo")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "models" / "LDSR" / "demo"
EVAL_SEED = 20_000  # held-out scenes: the training draws from seeds (seed, step), never this one

# first_stage_config.params: f4 (3 levels), 64 channels at full resolution (GroupNorm(32) over 32
# channels normalises each channel alone and erases absolute colours; see demo.py), no attention
# (the zoo's vq-f4-noattn option: the LDSR decode runs 128x128-latent tiles, where a mid attention
# trained on small crops would attend over 64x more positions than it ever saw)
FIRST_STAGE_PARAMS = {
    "embed_dim": 3, "n_embed": 8192,
    "ddconfig": {"attn_type": "none", "double_z": False, "z_channels": 3, "resolution": 128, "in_channels": 3,
                 "out_ch": 3, "ch": 64, "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                 "dropout": 0.0},
}
# bsr_sr's UNet (plain attention blocks at the lowest level and in the middle, 32-channel heads) at
# tiny widths: 64 channels (again 2 per norm group), levels 64-64-128
UNET_PARAMS = {"image_size": 32, "in_channels": 6, "out_channels": 3, "model_channels": 64,
               "attention_resolutions": [4], "num_res_blocks": 1, "channel_mult": [1, 1, 2], "num_head_channels": 32}


def demo_config(scale_factor: float) -> dict:
    """The demo's project.yaml: bsr_sr.yaml's model section with the sizes above."""
    return {"model": {
        "base_learning_rate": 1.0e-06,
        "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
        "params": {
            "linear_start": 0.0015, "linear_end": 0.0155, "log_every_t": 100, "timesteps": 1000,
            "loss_type": "l2", "first_stage_key": "image", "cond_stage_key": "LR_image", "image_size": 32,
            "channels": 3, "concat_mode": True, "cond_stage_trainable": False, "use_ema": False,
            "scale_factor": round(scale_factor, 5),
            "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": UNET_PARAMS},
            "first_stage_config": {"target": "ldm.models.autoencoder.VQModelInterface",
                                   "params": {**FIRST_STAGE_PARAMS, "lossconfig": {"target": "torch.nn.Identity"}}},
            "cond_stage_config": {"target": "torch.nn.Identity"},
        },
    }}


def build_vq(seed: int):
    from modules.ldm.vqgan import VQConfig, VQModelInterface

    torch.manual_seed(seed)
    return VQModelInterface(VQConfig.from_params(FIRST_STAGE_PARAMS))


def trained_vq(args, decoder: bool = False):
    """The first stage after stage 1 (vq), or with decoder=True after stage 3 (decoder)."""
    vq = build_vq(args.seed)
    name, steps = ("decoder", args.decoder_steps) if decoder else ("vq", args.vq_steps)
    state = torch.load(args.workdir / f"{name}.pt", map_location="cpu", weights_only=True)
    if state["step"] < steps:
        raise ValueError(f"the {name} stage stopped at step {state['step']} of {steps}: run --stage {name} first")
    vq.load_state_dict(state["modules"]["vq"])
    return vq.eval()


def build_model(args, decoder: bool = False):
    """The LatentDiffusion of the demo yaml with the trained first stage (UNet random, seeded)."""
    from modules.ldm.config import build_from_config

    vq = trained_vq(args, decoder)
    scale = 1.0 / latent_std(vq, args.seed + 7)
    torch.manual_seed(args.seed + 2)
    model = build_from_config(demo_config(scale))
    model.first_stage_model.load_state_dict(vq.state_dict())
    return model, scale


def stage_vq(args) -> None:
    vq = build_vq(args.seed)
    t0 = time.monotonic()
    train_vq(vq, VQTraining(steps=args.vq_steps), args.seed, args.workdir / "vq.pt")
    log.info("vq stage: %.1f min", (time.monotonic() - t0) / 60)


def decoder_training(steps: int) -> VQTraining:
    from .vq_loss import VQLossConfig

    return VQTraining(steps=steps, batch_size=4, crop=16, lr=2e-4, warmup_steps=20, train_encoder=False,
                      latent_noise=0.1, loss=VQLossConfig(foreground_weight=0.0, disc_start=2 * steps))


def stage_decoder(args) -> None:
    vq = trained_vq(args)
    t0 = time.monotonic()
    train_vq(vq, decoder_training(args.decoder_steps), args.seed + 10, args.workdir / "decoder.pt")
    log.info("decoder stage: %.1f min", (time.monotonic() - t0) / 60)


def stage_unet(args) -> None:
    model, _ = build_model(args)
    t0 = time.monotonic()
    train_ldsr(model, LDSRTraining(steps=args.unet_steps), args.seed + 3, args.workdir / "unet.pt")
    log.info("unet stage: %.1f min", (time.monotonic() - t0) / 60)


def exported_model(args):
    model, scale = build_model(args, decoder=True)
    trainer = ldsr_trainer(model, LDSRTraining(steps=args.unet_steps), args.seed + 3, args.workdir / "unet.pt")
    if trainer.step < args.unet_steps:
        raise ValueError(f"the unet stage stopped at step {trainer.step} of {args.unet_steps}: run --stage unet")
    model.model.diffusion_model.load_state_dict(trainer.averaged("unet").state_dict())
    return model.eval(), scale


def stage_export(args) -> None:
    import yaml
    from safetensors.torch import save_file

    from modules.atomic import atomic_write_text

    model, scale = exported_model(args)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"provenance": f"python -m modules.training.ldsr_demo --seed {args.seed} --vq-steps {args.vq_steps} "
                          f"--unet-steps {args.unet_steps} --decoder-steps {args.decoder_steps}",
            "weights": "UNet: EMA; fp16"}
    tmp = args.out / ".model.safetensors.tmp"
    save_file(checkpoint_tensors(model), str(tmp), metadata=meta)
    tmp.replace(args.out / "model.safetensors")
    atomic_write_text(args.out / "project.yaml", yaml.safe_dump(demo_config(scale), sort_keys=False))
    log.info("wrote %s (scale_factor %.5f)", args.out, scale)


def evaluate(model, rows: int = 4, cols: int = 4, steps: int = 100, seed: int = EVAL_SEED) -> dict:
    """PSNR (dB) of LDSR's 4x output and of bicubic upscaling against the ground truth, on a sheet of
    rows x cols held-out scenes (sr_scenes.grid)."""
    from PIL import Image

    from modules.ldsr.upscale import LDSRSettings, super_resolution

    from .sr_scenes import grid, psnr

    truth, low = grid(np.random.default_rng(seed), rows, cols)
    out = super_resolution(model, low, LDSRSettings(steps=steps))
    bicubic = low.resize(truth.size, Image.BICUBIC)
    return {"ldsr": psnr(out, truth), "bicubic": psnr(bicubic, truth),
            "images": {"low-res": low.resize(truth.size, Image.NEAREST), "bicubic": bicubic, "LDSR": out,
                       "truth": truth}}


def figure(images: dict, path: Path, crop: int = 256) -> None:
    """The top-left crop x crop of each image side by side (low-res, bicubic, LDSR, truth)."""
    from PIL import Image

    sheet = Image.new("RGB", (crop * len(images), crop))
    for i, image in enumerate(images.values()):
        sheet.paste(image.crop((0, 0, crop, crop)), (i * crop, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def stage_eval(args) -> None:
    from modules.ldsr import checkpoint

    model = checkpoint.load_ldsr(checkpoint.find_files(args.out))
    for steps in args.eval_steps:
        t0 = time.monotonic()
        result = evaluate(model, steps=steps)
        log.info("%d steps: LDSR %.2f dB, bicubic %.2f dB (%.0f s)", steps, result["ldsr"], result["bicubic"],
                 time.monotonic() - t0)
        if args.figure is not None and steps == args.eval_steps[0]:
            figure(result["images"], args.figure)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("vq", "unet", "decoder", "export", "eval", "all"), default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=ROOT / "tmp" / "ldsr-demo")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--vq-steps", type=int, default=VQTraining.steps)
    p.add_argument("--unet-steps", type=int, default=LDSRTraining.steps)
    p.add_argument("--decoder-steps", type=int, default=400)
    p.add_argument("--eval-steps", type=int, nargs="+", default=[100, 20])
    p.add_argument("--figure", type=Path, default=None, help="eval: write low-res / bicubic / LDSR / truth here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    stages = ("vq", "unet", "decoder", "export", "eval") if args.stage == "all" else (args.stage,)
    run = {"vq": stage_vq, "unet": stage_unet, "decoder": stage_decoder, "export": stage_export, "eval": stage_eval}
    for stage in stages:
        run[stage](args)


if __name__ == "__main__":
    main()
