"""Re-create the depth2img and x4 demo models from a seed: `python -m modules.training.demo_scenes`.

Both learn the synthetic scenes of scenes.py (shapes standing on a floor, their depth known) at
64x64 px, in the SD 2 layouts at tiny sizes: demo-depth as `v2-midas-inference` (5-channel UNet,
OpenCLIP-layout text encoder, MiDaS DPT-Hybrid), demo-x4 as `x4-upscaling` (7-channel UNet with the
noise-level embedding, v-prediction, low-res 16x16 -> 64x64). Stages, each resumable from its
checkpoint in --workdir (a killed run continues):
1. autoencoder: the f4 KL autoencoder both models share (64x64 -> 16x16x4; the x4 model's latent is
   the size of its low-res input, as in the original), L1 + KL without the GAN (the v1 demo's
   decoder stage): the x4 model is judged by PSNR, which a GAN trades for texture;
2. decoder: the decoder alone fine-tuned on the frozen latent space (as SD's ft-MSE VAE), so every
   upscale decodes sharper while the UNets' latents stay what they were;
3. midas: the depth estimator learns picture -> inverse depth (train_midas);
4. depth: UNet + text encoder, conditioned on the estimator's depth map through the app's own
   depth2img preprocessing (as the original LatentDepth2ImageDiffusion trained on MiDaS's output), on
   colour-swap pairs; from step 3000 on (the colour words learned first) with the token grounding loss
   (grounding_loss: each shape's pixels attend to the noun naming it - without it the model never
   bound colours to shapes; from step 0 it held back the colours: none learned by step 1500);
5. x4: UNet + text encoder on scenes at random zoom, the low-res picture box-filtered 4x and noised
   to a random level in [0, 350) (the original ImageConcatWithNoiseAugmentation);
6. export: EMA weights -> fp16 safetensors + yaml in models/Stable-diffusion/demo-depth and demo-x4.
Stage 2 needs 1, 3 needs nothing, 4 needs 1 and 3, 5 needs 1. 2 may also run after 4 and 5: they
train on latents only (their quick checks and the export decode with stage 2's decoder when it exists).

Time: see DEFAULTS below and the README ("The demo model").
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import scene_configs as configs
from . import scenes
from .train_autoencoder import AutoencoderTraining, init_low_logvar, latent_scale_factor, train_autoencoder
from .train_diffusion import DiffusionTraining, diffusion_trainer, train_diffusion
from .train_midas import MidasTraining, init_positive_output, train_midas
from .trainer import swapped_in_ema

log = logging.getLogger("demo_scenes")

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models" / "Stable-diffusion"
IMAGE_SIZE = configs.IMAGE_SIZE
STAGES = ("autoencoder", "decoder", "midas", "depth", "x4", "export")


def scene_pictures(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return zoomed_scenes(rng, n, size)[0]


def zoomed_scenes(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, list[str]]:
    """Scenes drawn at 64-128 px and cropped to `size` at random: shapes of many sizes, cut at the
    borders as in any tile of a larger picture (what the x4 model meets in tiled upscaling)."""
    images, captions = [], []
    for _ in range(n):
        scene = scenes.sample_scene(rng)
        big = int(rng.integers(max(size, IMAGE_SIZE), 2 * IMAGE_SIZE + 1)) // 4 * 4
        x, y = (int(v) for v in rng.integers(0, big - size + 1, size=2) // 4 * 4)  # whole low-res pixels
        images.append(scenes.render(scene, big)[y:y + size, x:x + size])
        captions.append(scenes.caption(scene, rng))
    pictures = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return pictures.transpose(0, 3, 1, 2), captions


def scene_pairs(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, list[str], list]:
    """Captioned scenes in colour-swap pairs (scenes.batch swap_pairs; trained with shared noise), and
    each named shape's visible pixels for the grounding loss."""
    images, _, captions, batch_scenes = scenes.batch(rng, n, size, swap_pairs=True)
    grounding = [[(t.shape, m) for t, m in zip(s.things, scenes.render_masks(s, size), strict=True)]
                 for s in batch_scenes]
    return images, captions, grounding


X4_EMPTY_CAPTION_P = 0.5  # Extras and hires fix mostly upscale without a prompt: train that case well


def x4_pairs(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, list[str]]:
    """zoomed_scenes with half the captions empty."""
    images, captions = zoomed_scenes(rng, n, size)
    return images, [c if rng.random() >= X4_EMPTY_CAPTION_P else "" for c in captions]


def build_autoencoder(seed: int):
    from modules.ldm.autoencoder import AutoencoderConfig, AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(AutoencoderConfig.from_params(configs.FIRST_STAGE_PARAMS))


# The autoencoder trains on 32 px crops of the scenes: it is convolutional, and a crop costs a quarter
# of a whole picture. Measured (on an earlier version of the scenes): 500 steps of 8 whole pictures
# reached 30.0 dB PSNR on held-out scenes (bicubic x4 upscaling reaches 28.3 there: no room for the
# x4 model), 1500 steps of 16 crops 33.0 dB.
AE_CROP = 32


def stage_autoencoder(args) -> None:
    ae = build_autoencoder(args.seed)
    cfg = AutoencoderTraining(steps=args.ae_steps, batch_size=16, image_size=AE_CROP, vgg_path=args.vgg)
    cfg.loss.disc_start = args.ae_steps  # no GAN (see the docstring)
    init_low_logvar(ae, cfg.initial_logvar)
    train_autoencoder(ae, cfg, args.seed, args.workdir / "autoencoder.pt", images=scene_pictures)


# Decoder fine-tuning on the frozen latent space (as SD's ft-MSE VAE): whole pictures, at a lower learning
# rate, plain (foreground-weighted) L1 - no LPIPS, no GAN. The x4 model is judged by PSNR and its output
# goes through this decoder, so its reconstruction error is a floor under every upscale (measured: round
# trip 33.5 -> 36.8 dB in 2000 steps, the 10000-step x4 model's upscale 28.6 -> 29.2 dB).
DECODER_LR = 2e-4


def stage_decoder(args) -> None:
    ae = build_autoencoder(args.seed)
    ae.load_state_dict(trained_state(args.workdir / "autoencoder.pt", "ae", "autoencoder"))
    cfg = AutoencoderTraining(steps=args.decoder_steps, batch_size=16, image_size=IMAGE_SIZE, lr=DECODER_LR,
                              warmup_steps=50, train_encoder=False)
    cfg.loss.disc_start = args.decoder_steps + 1  # no GAN
    train_autoencoder(ae, cfg, args.seed + 5, args.workdir / "decoder.pt", images=scene_pictures)


def trained_autoencoder(args):
    """The autoencoder after stage 1, or after stage 2 (the same encoder, the fine-tuned decoder) when it ran."""
    ae = build_autoencoder(args.seed)
    stage = "decoder" if (args.workdir / "decoder.pt").is_file() else "autoencoder"
    ae.load_state_dict(trained_state(args.workdir / f"{stage}.pt", "ae", stage))
    return ae


def build_midas(seed: int):
    from modules.ldm.midas import build_depth_model

    torch.manual_seed(seed + 30)
    midas = build_depth_model(configs.MIDAS_PARAMS)
    init_positive_output(midas)
    return midas


def stage_midas(args) -> None:
    train_midas(build_midas(args.seed), MidasTraining(steps=args.midas_steps), args.seed + 30,
                args.workdir / "midas.pt")


def trained_state(path: Path, module: str, stage: str) -> dict:
    """The trained weights of `module` in a stage's checkpoint."""
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}: run the {stage} stage first")
    return torch.load(path, map_location="cpu", weights_only=True)["modules"][module]


def build_model(args, kind: str):
    """The depth or x4 model: the trained autoencoder (and estimator), a seeded random UNet and text encoder."""
    from modules.ldm.config import build_from_config

    ae = trained_autoencoder(args)
    scale_factor = latent_scale_factor(ae, args.seed, image_size=IMAGE_SIZE, images=scene_pictures)
    config = configs.depth_config(scale_factor) if kind == "depth" else configs.x4_config(scale_factor)
    torch.manual_seed(args.seed + (2 if kind == "depth" else 3))
    model = build_from_config(config)
    model.first_stage_model.load_state_dict(ae.state_dict())
    if kind == "depth":
        midas = trained_state(args.workdir / "midas.pt", "midas", "midas")
        model.load_state_dict({f"depth_model.{k}": v for k, v in midas.items()}, strict=False)
    return model, config


def depth_conditioning(model, images: torch.Tensor, rng) -> torch.Tensor:
    """c_concat the way the depth2img tab makes it: the estimator's map, resized and min-max normalised."""
    from modules.processing.depth2img import depth_image_conditioning

    return depth_image_conditioning(model, images).cond


def x4_conditioning(model, images: torch.Tensor, rng) -> dict:
    """The low-res picture (box filter, as the scenes are rendered) noised to a random level, and the level."""
    low = F.avg_pool2d(images, model.vae_scale_factor)
    generator = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
    noised, level = model.low_scale_model(low, None, generator=generator)
    return {"c_concat": [noised], "c_adm": level}


def training(args, kind: str) -> DiffusionTraining:
    if kind == "depth":
        # mirror_pairs: the batch's halves pair up (here colour swaps, see scene_pairs) and share their noise
        return DiffusionTraining(steps=args.depth_steps, batch_size=16, image_size=IMAGE_SIZE, mirror_pairs=True,
                                 eval_every=args.eval_every, grounding_weight=args.grounding,
                                 grounding_start=args.grounding_start)
    # x4: v-prediction with min-SNR for v, and the high-noise weighting of the other demos: the layout is
    # in the low-res input, but following it is learned at high noise, where min-SNR alone weights an
    # x0 error by the SNR (~0). Without it (the first run) the outputs kept inventing: floors tilted,
    # triangles turned into drops, shapes where the input had none (25.1 dB against bicubic's 28.3).
    return DiffusionTraining(steps=args.x4_steps, batch_size=16, image_size=IMAGE_SIZE, mirror_pairs=False,
                             eval_every=args.eval_every)


def stage_diffusion(args, kind: str) -> None:
    from .scene_eval import depth_quick_eval, x4_quick_eval

    model, _ = build_model(args, kind)
    conditioning, data = (depth_conditioning, scene_pairs) if kind == "depth" else (x4_conditioning, x4_pairs)
    train_diffusion(model, training(args, kind), args.seed + (0 if kind == "depth" else 1),
                    args.workdir / f"{kind}.pt", depth_quick_eval if kind == "depth" else x4_quick_eval,
                    image_conditioning=conditioning, data=data)


def stage_export(args) -> None:
    from .export import export

    metadata = {"seed": str(args.seed), "trained_by": "python -m modules.training.demo_scenes"}
    if (args.workdir / "decoder.pt").is_file():  # both models decode with stage 2's decoder
        metadata["decoder_steps"] = str(torch.load(args.workdir / "decoder.pt", map_location="cpu",
                                                   weights_only=True)["step"])
    for kind, name in (("depth", "demo-depth"), ("x4", "demo-x4")):
        checkpoint = args.workdir / f"{kind}.pt"
        if not checkpoint.is_file():
            log.warning("no %s: skipping %s", checkpoint, name)
            continue
        model, config = build_model(args, kind)
        seed = args.seed + (0 if kind == "depth" else 1)
        trainer = diffusion_trainer(model, training(args, kind), seed, checkpoint)
        path = args.out / name / f"{name}.safetensors"
        with swapped_in_ema(model, trainer):
            export(model, config, path, metadata={**metadata, "steps": str(trainer.step)})
        log.info("wrote %s (%.1f MB), step %d", path, path.stat().st_size / 1e6, trainer.step)


# x4: 27.6 dB on the quick check after 3000 steps, 30.0 after 10000 (bicubic 28.0). The shipped demo-x4 went on
# to 16000 steps in a resumed run (--x4-steps 16000: a warm restart of the cosine rate) and has the
# decoder stage's 2000 steps: README, "The x4 upscaler demo".
GROUNDING_WEIGHT = 1.0
GROUNDING_START = 3000
DEFAULTS = {"ae_steps": 2000, "decoder_steps": 2000, "midas_steps": 2000, "depth_steps": 5500, "x4_steps": 10000}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    p.add_argument("--workdir", type=Path, default=ROOT / "tmp" / "demo-scenes-training",
                   help="checkpoints for resuming (default: tmp/demo-scenes-training)")
    p.add_argument("--out", type=Path, default=MODELS, help="folder of demo-depth/ and demo-x4/")
    for name, value in DEFAULTS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=value)
    p.add_argument("--grounding", type=float, default=GROUNDING_WEIGHT,
                   help="weight of the depth UNet's token grounding loss (grounding_loss; 0: off)")
    p.add_argument("--grounding-start", type=int, default=GROUNDING_START,
                   help="the depth stage's step the grounding loss starts at")
    p.add_argument("--eval-every", type=int, default=500, help="steps between quick evaluations (0: none)")
    p.add_argument("--vgg", type=Path, default=ROOT / "models" / "VGG" / "vgg16-397923af.pth",
                   help="torchvision VGG16 weights for the LPIPS loss (skipped when absent)")
    return p.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs = {"autoencoder": stage_autoencoder, "decoder": stage_decoder, "midas": stage_midas,
            "depth": lambda a: stage_diffusion(a, "depth"), "x4": lambda a: stage_diffusion(a, "x4"),
            "export": stage_export}
    for stage in STAGES:
        if args.stage in (stage, "all"):
            t0, cpu0 = time.monotonic(), time.process_time()
            runs[stage](args)
            # CPU minutes are what the stage cost (one thread); wall minutes also count the machine's other work
            log.info("stage %s: %.1f CPU min, %.1f wall min", stage, (time.process_time() - cpu0) / 60,
                     (time.monotonic() - t0) / 60)


if __name__ == "__main__":
    main()
