"""Make the README's SD3 demo images and accuracy table from the shipped SD3 demo model.

    venv/bin/python scripts/demo_sd3_images.py            # writes docs/demo-sd3/*.png, prints markdown

Each PNG is one prompt over 6 seeds (Euler, 20 steps, shift 3, CFG 5, 32x32, shown 3x larger with
nearest-neighbour scaling), sampled by modules.training.evaluate_sd3. The table measures 10 seeds
per prompt with modules.training.image_metrics.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modules.training.evaluate_sd3 import generate, load, measure, standard_prompts, summary  # noqa: E402
from scripts.demo_images import slug, strip  # noqa: E402

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle on the left",
           "a purple square on the right", "a small red circle on a blue background",
           "a large green triangle on a black background", "a small orange square on a white background"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo-sd3")
    p.add_argument("--seeds", type=int, default=6, help="images per prompt in each PNG")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model = load()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| prompt | seeds 1-%d |\n|---|---|" % args.seeds)
    for prompt in PROMPTS:
        images = generate(model, [prompt] * args.seeds, list(range(1, args.seeds + 1)))
        path = args.out / f"{slug(prompt)}.png"
        strip(images).save(path, optimize=True)
        print(f"| {prompt} | ![{prompt}]({path.relative_to(ROOT).as_posix()}) |")
    results = measure(model, standard_prompts(full=True), list(range(10)))
    print("\n| prompt | attribute | right (of 10 seeds) |\n|---|---|---|")
    for r in results:
        print(f"| {r.prompt} | {r.attribute} | {r.hits} |")
    print("\nOverall:", ", ".join(f"{k} {v:.0%}" for k, v in summary(results).items()))


if __name__ == "__main__":
    main()
