"""Make the README's depth2img and x4 demo pictures and figures from the demo models (the shipped
ones, or a training run's with --models; a demo that is not there is skipped).

    venv/bin/python scripts/demo_scene_images.py      # writes docs/demo/depth2img*.png, docs/demo/x4.png
    venv/bin/python scripts/demo_scene_images.py --models /tmp/trained --out /tmp/figures

depth2img (the app's depth2img with the demo's defaults: DPM++ 2M, 20 steps, CFG 7): the input, the
estimated depth map and outputs for "a green circle and a yellow square" over 6 seeds, the same with
a user's depth map (the mirrored scene), and over --seeds seeds: the layout kept, the colours put
where the prompt says, the user's map followed (the measures the demos' tests use). x4 (the app's
'SD x4': DDIM 50 steps, noise level 20): held-out scenes as low-res input, bicubic, x4 demo and the
truth, with the mean PSNR of both over --scenes scenes. Pictures are shown 3x larger (nearest).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modules.models.loader import load_checkpoint  # noqa: E402
from modules.processing.depth2img import Depth2ImgRequest, depth2img  # noqa: E402
from modules.processing.hybrid_sampling import SamplingSettings  # noqa: E402
from modules.processing.upscaler_x4 import X4Settings, upscale_x4  # noqa: E402
from modules.training import scene_eval as se  # noqa: E402
from modules.training import scene_metrics as sm  # noqa: E402
from modules.training import scenes  # noqa: E402

MODELS = ROOT / "models" / "Stable-diffusion"
WANTED = ["green", "yellow"]
SWAPPED_PROMPT = "a yellow circle and a green square"


def strip(images: list[np.ndarray], scale: int = 3, gap: int = 2) -> Image.Image:
    """Pictures side by side (each scaled to the first one's height x scale, nearest), on white."""
    h = images[0].shape[0] * scale
    tiles = [Image.fromarray(im).convert("RGB").resize((h * im.shape[1] // im.shape[0], h), Image.Resampling.NEAREST)
             for im in images]
    out = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), h), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    return out


def run_depth2img(model, picture: np.ndarray, seed: int, n: int, depth_map: Image.Image | None = None,
                  prompt: str = se.REPAINT_PROMPT):
    settings = SamplingSettings(prompt=prompt, steps=20, seed=seed)
    return depth2img(model, Depth2ImgRequest(image=Image.fromarray(picture), settings=settings,
                                             denoising_strength=se.REPAINT_STRENGTH, depth_map=depth_map,
                                             batch_size=n))


def depth_figures(models: Path, out: Path, seeds: int) -> None:
    model = load_checkpoint(models / "demo-depth" / "demo-depth.safetensors").model
    scene = se.two_shapes_scene()
    picture = scenes.render(scene, 64)
    result = run_depth2img(model, picture, 1, 6)
    depth = np.asarray(result.depth_image)
    strip([picture, depth, *[np.asarray(im) for im in result.images]]).save(out / "depth2img.png", optimize=True)
    mirrored = se.mirrored_scene()
    user_map = Image.fromarray((scenes.render_depth(mirrored, 64) * 255).round().astype(np.uint8), "L")
    user = run_depth2img(model, picture, 1, 6, user_map)
    strip([picture, np.asarray(user_map), *[np.asarray(im) for im in user.images]]).save(out / "depth2img-user-map.png",
                                                                                          optimize=True)
    measured = [np.asarray(im) for im in run_depth2img(model, picture, 100, seeds).images]
    ok = sum(se.repaint_report(im, scene, WANTED).ok(WANTED, se.MAX_OFFSET) for im in measured)
    kept = sum(se.layout_iou(im, scene) >= 0.7 for im in measured)
    followed = [np.asarray(im) for im in run_depth2img(model, picture, 100, seeds, user_map).images]
    follows = sum(se.layout_iou(im, mirrored) >= 0.7 and se.layout_iou(im, mirrored) > se.layout_iou(im, scene) + 0.1
                  for im in followed)
    swapped = [np.asarray(im) for im in run_depth2img(model, picture, 100, seeds, prompt=SWAPPED_PROMPT).images]
    ok_swapped = sum(se.repaint_report(im, scene, WANTED[::-1]).ok(WANTED[::-1], se.MAX_OFFSET) for im in swapped)
    corr = sm.correlation(depth.astype(np.float32), scenes.render_depth(scene, 64))
    print(f"depth2img over {seeds} seeds: layout kept (IoU >= 0.7) in {kept}, each shape in the colour the prompt "
          f"gives it in {ok} ({ok_swapped} for \"{SWAPPED_PROMPT}\"); with the mirrored user depth map the outputs "
          f"follow its outlines in {follows}; estimated vs true depth correlation {corr:.3f}")
    recoloured_figures(model, seeds)


def recoloured_figures(model, n: int) -> None:
    """Held-out scenes of 2-3 shapes, each repainted with its colours moved round (the caption names the
    new ones): how many visible shapes take the colour their words give them."""
    rng = np.random.default_rng(se.HELD_OUT_SEED + 1)
    right = total = 0
    for i in range(n):
        scene = scenes.sample_scene(rng, n=int(rng.integers(2, 4)))
        wanted = scenes.recoloured(scene, rng)
        result = run_depth2img(model, scenes.render(scene, 64), 100 + i, 1, prompt=scenes.caption(wanted))
        out = np.asarray(result.images[0])
        for thing, mask in se.visible_things(wanted):  # the same outlines as the scene's
            total += 1
            right += sm.region_color(out, mask) == thing.color
    print(f"held-out scenes repainted with their colours moved round: {right}/{total} visible shapes in the colour "
          "the prompt gives them")


def x4_figures(models: Path, out: Path, n: int) -> None:
    model = load_checkpoint(models / "demo-x4" / "demo-x4.safetensors").model
    rows, ours, cubic, kept = [], [], [], []
    for i, scene in enumerate(se.held_out_scenes(n)):
        truth = scenes.render(scene, 64)
        low = se.low_res(truth)
        up = np.asarray(upscale_x4(model, low, X4Settings(sampling=SamplingSettings(steps=50, cfg_scale=9.0,
                                                                                   sampler_name="DDIM", seed=i))).image)
        ours.append(sm.psnr(up, truth))
        cubic.append(sm.psnr(se.bicubic(low), truth))
        for thing, mask in se.visible_things(scene):
            moved = sm.distance(sm.centre(mask), sm.centre(sm.color_mask(up, thing.color) & mask))
            kept.append(sm.region_color(up, mask) == thing.color and moved <= 2.0)
        if i < 4:
            rows.append(strip([np.asarray(low.resize((64, 64), Image.Resampling.NEAREST)), se.bicubic(low), up, truth]))
    grid = Image.new("RGB", (rows[0].width, sum(r.height + 2 for r in rows) - 2), "white")
    for j, r in enumerate(rows):
        grid.paste(r, (0, j * (r.height + 2)))
    grid.save(out / "x4.png", optimize=True)
    print(f"x4 on {n} held-out scenes: PSNR {np.mean(ours):.2f} dB (bicubic {np.mean(cubic):.2f} dB); "
          f"better than bicubic on {sum(o > c for o, c in zip(ours, cubic, strict=True))}/{n}; "
          f"colour and place (within 2 px) kept for {sum(kept)}/{len(kept)} visible shapes")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "demo")
    p.add_argument("--models", type=Path, default=MODELS,
                   help="folder of demo-depth/ and demo-x4/ (e.g. the --out of a demo_scenes run; default: the shipped ones)")
    p.add_argument("--seeds", type=int, default=20, help="seeds for the depth2img figures")
    p.add_argument("--scenes", type=int, default=20, help="held-out scenes for the x4 figures")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, figures, n in (("demo-depth", depth_figures, args.seeds), ("demo-x4", x4_figures, args.scenes)):
        if (args.models / name / f"{name}.safetensors").is_file():
            figures(args.models, args.out, n)
        else:
            print(f"no {name} in {args.models}: no figures for it (python -m modules.training.demo_scenes trains it)")


if __name__ == "__main__":
    main()
