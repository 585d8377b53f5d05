"""Make the README's demo images and accuracy table from the shipped demo model.

    venv/bin/python scripts/demo_images.py            # writes docs/demo/*.png, prints markdown

Also one strip of the inpainting variant (demo-inpainting.safetensors) through the app's img2img.

Each PNG is one prompt over 6 seeds (DPM++ 2M Karras, 20 steps, CFG 7, 32x32, shown 3x larger with
nearest-neighbour scaling). The table measures 10 seeds per prompt with modules.training.image_metrics.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modules.models.loader import load_checkpoint  # noqa: E402
from modules.training.evaluate import generate, measure, standard_prompts, summary  # noqa: E402
from modules.training.export import DEMO_DIR  # noqa: E402

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle on the left",
           "a purple square on the right", "an orange triangle on the left"]


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")


def strip(images: np.ndarray, scale: int = 3, gap: int = 2) -> Image.Image:
    """Images side by side, scaled up, on a white strip."""
    n, h, w, _ = images.shape
    out = Image.new("RGB", (n * (w * scale + gap) - gap, h * scale), "white")
    for i, img in enumerate(images):
        out.paste(Image.fromarray(img).resize((w * scale, h * scale), Image.Resampling.NEAREST),
                  (i * (w * scale + gap), 0))
    return out


def inpaint_example(seeds: int) -> tuple[str, np.ndarray]:
    """The inpainting variant through the app's img2img: a red circle on the left, the right half
    masked and repainted with a new prompt. Returns (prompt, [input, mask, outputs...])."""
    from modules.jobs import Job
    from modules.options import Options
    from modules.processing import ProcessingEnv, StableDiffusionProcessingImg2Img, process_images

    prompt = "a green square on the right"
    init = Image.fromarray(generate(load_checkpoint(DEMO_DIR / "demo.safetensors").model,
                                    ["a red circle on the left"], [12])[0])
    size = init.width
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 2, 0, size, size))
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False})
    model = load_checkpoint(DEMO_DIR / "demo-inpainting.safetensors").model
    p = StableDiffusionProcessingImg2Img(
        sd_model=model, env=ProcessingEnv(opts=opts, job=Job("demo images")), prompt=prompt, seed=200,
        batch_size=seeds, steps=20, width=size, height=size, sampler_name="DPM++ 2M", init_images=[init],
        denoising_strength=1.0, image_mask=mask, mask_blur=0, inpainting_fill=2, inpaint_full_res=False)
    outs = [np.asarray(im.convert("RGB")) for im in process_images(p).images]
    return prompt, np.stack([np.asarray(init), np.asarray(mask.convert("RGB")), *outs])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo")
    p.add_argument("--seeds", type=int, default=6, help="images per prompt in each PNG")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load_checkpoint(DEMO_DIR / "demo.safetensors").model
    args.out.mkdir(parents=True, exist_ok=True)
    print("| prompt | seeds 1-%d |\n|---|---|" % args.seeds)
    for prompt in PROMPTS:
        images = generate(model, [prompt] * args.seeds, list(range(1, args.seeds + 1)))
        path = args.out / f"{slug(prompt)}.png"
        strip(images).save(path, optimize=True)
        print(f"| {prompt} | ![{prompt}]({path.relative_to(ROOT).as_posix()}) |")
    prompt, images = inpaint_example(args.seeds - 2)
    path = args.out / "inpainting.png"
    strip(images).save(path, optimize=True)
    print(f"\ninpainting ({prompt!r}): input, mask, outputs: ![inpainting]({path.relative_to(ROOT).as_posix()})")
    results = measure(model, standard_prompts(full=True), list(range(10)))
    print("\n| prompt | attribute | right (of 10 seeds) |\n|---|---|---|")
    for r in results:
        print(f"| {r.prompt} | {r.attribute} | {r.hits} |")
    print("\nOverall:", ", ".join(f"{k} {v:.0%}" for k, v in summary(results).items()))


if __name__ == "__main__":
    main()
