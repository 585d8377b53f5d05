"""Does the depth / x4 demo do what it claims? The measurements the tests, the README and the
training's periodic evaluations share.

depth2img: a red circle on the left and a blue square on the right, repainted with "a green circle
and a yellow square": is each shape where it was (centre of its new colour within a few pixels of
the old outline's centre) and in its new colour? And does the estimated depth follow the true one?
x4: on scenes the model never saw (their own seed), PSNR of 16 -> 64 px against the true picture,
next to bicubic upscaling.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from . import scene_metrics as sm
from . import scenes

log = logging.getLogger(__name__)

REPAINT_PROMPT = "a green circle and a yellow square"
REPAINT_STRENGTH = 0.75  # the depth2img tab's default denoising strength
MAX_OFFSET = 3.0  # pixels (of 64) a repainted shape's centre may move
HELD_OUT_SEED = 20_000  # no training step draws from this generator seed (training seeds are [seed, step])
LOW_RES = 16
MIN_VISIBLE = 20  # pixels (of 64x64) a shape must show to be judged; fewer: hidden behind a nearer one


def two_shapes_scene() -> scenes.Scene:
    """The depth2img test picture: a red circle on the left, a blue square on the right."""
    return scenes.Scene(things=(scenes.Thing("red", "circle", 0.28, 0.55, 1.5),
                                scenes.Thing("blue", "square", 0.72, 0.5, 1.7)))


def mirrored_scene() -> scenes.Scene:
    """The test picture's layout mirrored (the circle on the right, the square on the left): its
    depth map, given as the user's, must move the shapes."""
    scene = two_shapes_scene()
    return replace(scene, things=tuple(replace(t, x=1 - t.x) for t in scene.things))


@dataclass
class Repaint:
    """One output picture against the input's shapes (in scene order)."""
    colors: list  # the colour each input outline got (None: gray)
    offsets: list  # pixels between each input outline's centre and the centre of its wanted colour

    def ok(self, wanted: list[str], max_offset: float) -> bool:
        return self.colors == wanted and max(self.offsets) <= max_offset


def repaint_report(image: np.ndarray, scene: scenes.Scene, wanted: list[str]) -> Repaint:
    masks = scenes.render_masks(scene, image.shape[0])
    colors = [sm.region_color(image, m) for m in masks]
    offsets = [sm.distance(sm.centre(m), sm.centre(sm.color_mask(image, c))) for m, c in zip(masks, wanted, strict=True)]
    return Repaint(colors, offsets)


def visible_things(scene: scenes.Scene, size: int = 64) -> list[tuple[scenes.Thing, np.ndarray]]:
    """(thing, bool mask [size, size]) for the scene's shapes that show at least MIN_VISIBLE pixels."""
    return [(t, m) for t, m in zip(scene.things, scenes.render_masks(scene, size), strict=True) if m.sum() >= MIN_VISIBLE]


def layout_iou(image: np.ndarray, scene: scenes.Scene) -> float:
    """How well the coloured pixels of `image` cover the scene's outlines and nothing else (IoU of the
    saturated pixels with the union of the shapes' masks): the layout, whatever the colours."""
    masks = scenes.render_masks(scene, image.shape[0])
    return sm.iou(sm.colored(image), np.logical_or.reduce(masks))


def depth_quick_eval(model, step: int, seeds: int = 4) -> None:
    """Logged during training: the repaint test on a few seeds, through the app's depth2img."""
    from modules.processing.depth2img import Depth2ImgRequest, depth2img
    from modules.processing.hybrid_sampling import SamplingSettings

    t0 = time.monotonic()
    scene = two_shapes_scene()
    image = Image.fromarray(scenes.render(scene, 64))
    out = {}
    for strength in (0.75, 1.0):
        settings = SamplingSettings(prompt=REPAINT_PROMPT, steps=20, seed=1)
        result = depth2img(model, Depth2ImgRequest(image=image, settings=settings, denoising_strength=strength,
                                                   batch_size=seeds))
        reports = [repaint_report(np.asarray(im), scene, ["green", "yellow"]) for im in result.images]
        out[strength] = (sum(r.ok(["green", "yellow"], 3.0) for r in reports),
                         [(r.colors, [round(o, 1) for o in r.offsets]) for r in reports[:2]])
    depth = np.asarray(result.depth_image, dtype=np.float32)
    corr = sm.correlation(depth, scenes.render_depth(scene, 64))
    log.info("step %d: repaint ok %s of %d, depth correlation %.3f (eval %.0f s)", step, out, seeds, corr,
             time.monotonic() - t0)


def held_out_scenes(n: int, size: int = 64) -> list[scenes.Scene]:
    rng = np.random.default_rng(HELD_OUT_SEED)
    return [scenes.sample_scene(rng) for _ in range(n)]


def low_res(picture: np.ndarray, factor: int = 4) -> Image.Image:
    """The low-res input of a high-res picture: box filter (area average), as the training pairs."""
    h, w = picture.shape[:2]
    return Image.fromarray(picture).resize((w // factor, h // factor), Image.Resampling.BOX)


def bicubic(image: Image.Image, factor: int = 4) -> np.ndarray:
    return np.asarray(image.resize((image.width * factor, image.height * factor), Image.Resampling.BICUBIC))


def x4_quick_eval(model, step: int, n: int = 8) -> None:
    """Logged during training: PSNR of the model and of bicubic on held-out scenes (20 DDIM steps)."""
    from modules.processing.hybrid_sampling import SamplingSettings
    from modules.processing.upscaler_x4 import X4Settings, upscale_x4

    t0 = time.monotonic()
    ours, cubic = [], []
    for i, scene in enumerate(held_out_scenes(n)):
        truth = scenes.render(scene, 64)
        low = low_res(truth)
        settings = X4Settings(sampling=SamplingSettings(steps=20, cfg_scale=9.0, sampler_name="DDIM", seed=i))
        ours.append(sm.psnr(np.asarray(upscale_x4(model, low, settings).image), truth))
        cubic.append(sm.psnr(bicubic(low), truth))
    log.info("step %d: PSNR x4 %.2f dB, bicubic %.2f dB (eval %.0f s)", step, np.mean(ours), np.mean(cubic),
             time.monotonic() - t0)
