"""Does the demo model draw what the prompt says? Generate with k-diffusion and measure.

    python -m modules.training.evaluate [path/to/demo.yaml] [--seeds 10]

prints the share of seeds whose image has the prompted colour / shape / side, per prompt.
Generation here is deliberately minimal (k-diffusion's DPM++ 2M Karras with classifier-free
guidance through CompVisDenoiser), independent of the app's pipelines, so it can check them too.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from k_diffusion.external import CompVisDenoiser, CompVisVDenoiser
from k_diffusion.sampling import get_sigmas_karras, sample_dpmpp_2m

from . import image_metrics
from .shapes import COLORS, SHAPES


class CFGDenoiser(torch.nn.Module):
    """denoised = uncond + scale * (cond - uncond) (Ho & Salimans 2022), both in one batch."""

    def __init__(self, model, cond_scale: float):
        super().__init__()
        wrapper = CompVisVDenoiser if model.parameterization == "v" else CompVisDenoiser
        self.inner = wrapper(model)
        self.cond_scale = cond_scale

    def forward(self, x, sigma, cond, uncond):
        out = self.inner(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=torch.cat([uncond, cond]))
        uncond_out, cond_out = out.chunk(2)
        return uncond_out + self.cond_scale * (cond_out - uncond_out)


@torch.no_grad()
def generate(model, prompts: list[str], seeds: list[int], negative_prompt: str = "", steps: int = 20,
             cfg_scale: float = 7.0, size: int | None = None) -> np.ndarray:
    """One image per (prompt, seed) pair -> uint8 [N, size, size, 3]; size defaults to the model's own."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt")
    f = model.vae_scale_factor
    size = size or model.config.image_size * f
    denoiser = CFGDenoiser(model, cfg_scale)
    sigmas = get_sigmas_karras(steps, float(denoiser.inner.sigma_min), float(denoiser.inner.sigma_max))
    noise = torch.stack([torch.randn(model.channels, size // f, size // f, generator=torch.Generator().manual_seed(s))
                         for s in seeds])
    cond = model.get_learned_conditioning(prompts)
    uncond = model.get_learned_conditioning([negative_prompt] * len(prompts))
    latents = sample_dpmpp_2m(denoiser, noise * sigmas[0], sigmas, extra_args={"cond": cond, "uncond": uncond},
                              disable=True)
    images = model.decode_first_stage(latents).float().clamp(-1, 1)
    return ((images + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Accuracy:
    prompt: str
    attribute: str  # "color", "shape" or "side"
    expected: str
    hits: int
    total: int

    def __str__(self) -> str:
        return f"{self.prompt!r:42} {self.attribute:5} {self.hits}/{self.total}"


MEASURE = {"color": image_metrics.dominant_color, "shape": image_metrics.shape, "side": image_metrics.side}


def measure(model, prompts: dict[str, dict[str, str]], seeds: list[int], **gen_kwargs) -> list[Accuracy]:
    """prompts: {prompt: {attribute: expected}} -> one Accuracy per (prompt, attribute)."""
    results = []
    for prompt, expected in prompts.items():
        images = generate(model, [prompt] * len(seeds), seeds, **gen_kwargs)
        for attr, want in expected.items():
            hits = sum(MEASURE[attr](img) == want for img in images)
            results.append(Accuracy(prompt, attr, want, hits, len(seeds)))
    return results


def standard_prompts(full: bool = False) -> dict[str, dict[str, str]]:
    """The prompts the tests and README use; full=True adds every colour x shape and both sides."""
    prompts = {
        "a red circle": {"color": "red", "shape": "circle"},
        "a blue square": {"color": "blue", "shape": "square"},
        "a green triangle": {"color": "green", "shape": "triangle"},
        "a yellow circle on the left": {"color": "yellow", "side": "left", "shape": "circle"},
        "a purple square on the right": {"color": "purple", "side": "right", "shape": "square"},
    }
    if full:
        for color in COLORS:
            for shape in SHAPES:
                article = "an" if color[0] in "aeiou" else "a"
                prompts.setdefault(f"{article} {color} {shape}", {"color": color, "shape": shape})
        for side in ("left", "right"):
            prompts.setdefault(f"a shape on the {side}", {"side": side})
    return prompts


def summary(results: list[Accuracy]) -> dict[str, float]:
    """Accuracy per attribute over all prompts."""
    out = {}
    for attr in MEASURE:
        rows = [r for r in results if r.attribute == attr]
        if rows:
            out[attr] = sum(r.hits for r in rows) / sum(r.total for r in rows)
    return out


def main(argv=None):
    from modules.training.export import load_demo_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("yaml", nargs="?", type=Path, default=None, help="model yaml (default: the shipped demo)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--full", action="store_true", help="every colour x shape, not just the test prompts")
    p.add_argument("--cfg-scale", type=float, default=7.0)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_demo_model(args.yaml)
    results = measure(model, standard_prompts(args.full), list(range(args.seeds)),
                      cfg_scale=args.cfg_scale, steps=args.steps)
    for r in results:
        print(r)
    print({k: round(v, 3) for k, v in summary(results).items()})


if __name__ == "__main__":
    main()
