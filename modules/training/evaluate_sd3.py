"""Does the SD3 demo model draw what the prompt says? Sample and measure.

    python -m modules.training.evaluate_sd3 [path/to/demo-sd3.safetensors] [--seeds 10]

prints the share of seeds whose image has the prompted colour / shape / side / size / background.
The sampler here is deliberately minimal and independent of the app's: Euler steps along the
rectified-flow ODE dz/dsigma = v (exact for straight paths) over the shifted sigma schedule
sigma(t) = shift t / (1 + (shift - 1) t) on t = 1 .. 0 in equal steps (Esser et al. 2024, sec. 5.3.2;
shift 3.0, the SD3 family's), with classifier-free guidance v = v_u + s (v_c - v_u), the
unconditional branch being the encoding of the negative prompt ("" by default), as SD3 does.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from . import image_metrics
from .evaluate import Accuracy
from .sd3_shapes import BACKGROUNDS

MEASURE = {
    "color": image_metrics.dominant_color,
    "shape": image_metrics.shape,
    "side": image_metrics.side,
    "size": image_metrics.size,
    "background": lambda image: image_metrics.background(image, BACKGROUNDS),
}


def flow_sigmas(steps: int, shift: float = 3.0) -> torch.Tensor:
    """steps + 1 sigmas from 1 to 0."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


@torch.no_grad()
def generate(model, prompts: list[str], seeds: list[int], negative_prompt: str = "", steps: int = 20,
             cfg_scale: float = 5.0, shift: float = 3.0, size: int = 32) -> np.ndarray:
    """One image per (prompt, seed) pair -> uint8 [N, size, size, 3]."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt")
    f, channels = model.vae_scale_factor, model.latent_channels
    x = torch.stack([torch.randn(channels, size // f, size // f, generator=torch.Generator().manual_seed(s))
                     for s in seeds])
    cond = model.get_learned_conditioning(prompts)
    uncond = model.get_learned_conditioning([negative_prompt] * len(prompts))
    both = {k: torch.cat([uncond[k], cond[k]]) for k in cond}
    sigmas = flow_sigmas(steps, shift)
    for i in range(steps):  # x starts as pure noise: sigma 1
        v_uncond, v_cond = model.apply_model(torch.cat([x, x]), 1000 * sigmas[i].expand(2 * len(x)), both).chunk(2)
        x = x + (sigmas[i + 1] - sigmas[i]) * (v_uncond + cfg_scale * (v_cond - v_uncond))
    images = model.decode_first_stage(x).float().clamp(-1, 1)
    return ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def measure(model, prompts: dict[str, dict[str, str]], seeds: list[int], **gen_kwargs) -> list[Accuracy]:
    """prompts: {prompt: {attribute: expected}} -> one Accuracy per (prompt, attribute)."""
    results = []
    for prompt, expected in prompts.items():
        images = generate(model, [prompt] * len(seeds), seeds, **gen_kwargs)
        for attr, want in expected.items():
            hits = sum(MEASURE[attr](img) == want for img in images)
            results.append(Accuracy(prompt, attr, want, hits, len(seeds)))
    return results


def summary(results: list[Accuracy]) -> dict[str, float]:
    """Accuracy per attribute over all prompts."""
    out = {}
    for attr in MEASURE:
        rows = [r for r in results if r.attribute == attr]
        if rows:
            out[attr] = sum(r.hits for r in rows) / sum(r.total for r in rows)
    return out


def standard_prompts(full: bool = False) -> dict[str, dict[str, str]]:
    """The prompts the tests and README use: the v1 demo's, plus size and background."""
    prompts = {
        "a red circle": {"color": "red", "shape": "circle"},
        "a blue square": {"color": "blue", "shape": "square"},
        "a green triangle": {"color": "green", "shape": "triangle"},
        "a yellow circle on the left": {"color": "yellow", "side": "left"},
        "a purple square on the right": {"color": "purple", "side": "right"},
        "a small red circle on a blue background": {"color": "red", "size": "small", "background": "blue"},
        "a large green triangle on a black background": {"color": "green", "size": "large", "background": "black"},
        "a small orange square on a white background": {"color": "orange", "size": "small", "background": "white"},
    }
    if full:
        prompts.update({
            "a large blue circle on the left on a gray background":
                {"color": "blue", "size": "large", "side": "left", "background": "gray"},
            "a small yellow triangle on the right on a blue background":
                {"color": "yellow", "size": "small", "side": "right", "background": "blue"},
            "an orange triangle on the left": {"color": "orange", "side": "left", "shape": "triangle"},
            "a large purple square on a white background":
                {"color": "purple", "size": "large", "background": "white", "shape": "square"},
        })
    return prompts


def load(path: Path | None = None, dtype: torch.dtype = torch.float32):
    """The SD3 demo through the app's loader (default: the shipped file)."""
    from modules.models.loader import load_checkpoint

    from .demo_sd3 import DEFAULT_OUT, FILE_NAME

    return load_checkpoint(path or DEFAULT_OUT / FILE_NAME, dtype=dtype, text_encoder_dirs=[]).model


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", type=Path, default=None, help="default: the shipped SD3 demo")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--full", action="store_true", help="more prompts (all attributes together)")
    p.add_argument("--cfg-scale", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--shift", type=float, default=3.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load(args.checkpoint)
    results = measure(model, standard_prompts(args.full), list(range(args.seeds)),
                      cfg_scale=args.cfg_scale, steps=args.steps, shift=args.shift)
    for r in results:
        print(r)
    print({k: round(v, 3) for k, v in summary(results).items()})


if __name__ == "__main__":
    main()
