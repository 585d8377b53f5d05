"""The SD3 demo's pictures: the v1 demo's coloured shapes (shapes.py) with the two attributes that
demo lacks, size (small / large) and background colour, captioned like
"a small red circle on the left on a blue background".

The scenes are shapes.Scene objects drawn by shapes.render; only the sampling and the captions
differ. A shape never has its background's colour (it would be invisible). Attributes are dropped
from captions at random as in shapes.py (the image keeps them), so "a red circle" is covered and
draws a random size, side and background; a share of captions is empty (the unconditional prompt).

Contrast pairs (see `batch`): the second half of a batch repeats the first with one attribute
changed - side (mirrored), size or background - and that attribute named in both captions. Trained
with the same noise and time for both halves (train_flow), the one changed word is all that tells
a pair apart: the v1 demo's mirror pairs, extended to the new attributes.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import shapes
from .shapes import COLORS, SHAPES, Scene

SIZES = {"small": (0.26, 0.34), "large": (0.42, 0.56)}  # shape width, fraction of the image
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "white": (235, 235, 235),
    "black": (25, 25, 25),
    "blue": COLORS["blue"],  # a shape colour too: "a red circle on a blue background" must bind the words
}
SIDES = shapes.SIDES
DROP = {"size": 0.5, "color": 0.15, "shape": 0.15, "side": 0.3, "background": 0.5}
EMPTY_CAPTION_P = shapes.EMPTY_CAPTION_P
CONTRASTS = ("side", "size", "background")  # what the two halves of a contrast pair differ in (default)
ALL_CONTRASTS = (*CONTRASTS, "shape")  # shape pairs: the demo's later flow steps (squares came out as blobs)


def _centre_y(rng: np.random.Generator, width: float) -> float:
    margin = (0.45 - width / 2) * 0.6  # as shapes.sample_scenes: the shape stays inside the image
    return float(rng.uniform(0.5 - margin, 0.5 + margin))


def sample_scenes(rng: np.random.Generator, n: int) -> list[Scene]:
    scenes = []
    for _ in range(n):
        size, side = str(rng.choice(list(SIZES))), str(rng.choice(list(SIDES)))
        width = float(rng.uniform(*SIZES[size]))
        color, shape = str(rng.choice(list(COLORS))), str(rng.choice(SHAPES))
        background = str(rng.choice([b for b in BACKGROUNDS if b != color]))
        scenes.append(Scene(color=color, shape=shape, size=size, side=side, background=background, width=width,
                            cx=float(rng.uniform(*SIDES[side])), cy=_centre_y(rng, width),
                            color_jitter=tuple(int(v) for v in rng.integers(-12, 13, size=3))))
    return scenes


def caption(scene: Scene, rng: np.random.Generator | None = None, keep: tuple[str, ...] = ()) -> str:
    """"a small red circle on the left on a blue background"; with `rng`, attributes are dropped at
    random (never those in `keep`) and a share of captions is empty."""
    if rng is not None and rng.random() < EMPTY_CAPTION_P:
        return ""

    def named(attr: str) -> bool:
        return rng is None or attr in keep or rng.random() >= DROP[attr]

    words = [w for w, attr in ((scene.size, "size"), (scene.color, "color")) if named(attr)]
    words.append(scene.shape if named("shape") else "shape")
    noun = " ".join(words)
    text = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    if named("side"):
        text += f" on the {scene.side}"
    if named("background"):
        text += f" on a {scene.background} background"
    return text


def contrasted(scene: Scene, attr: str, rng: np.random.Generator) -> Scene:
    """The scene with `attr` changed: mirrored to the other side, the other size (same centre x),
    another background (never the shape's colour), or another shape (same colour, size and place)."""
    if attr == "side":
        return shapes.mirrored(scene)
    if attr == "size":
        size = "large" if scene.size == "small" else "small"
        width = float(rng.uniform(*SIZES[size]))
        return replace(scene, size=size, width=width, cy=_centre_y(rng, width))
    if attr == "background":
        others = [b for b in BACKGROUNDS if b not in (scene.background, scene.color)]
        return replace(scene, background=str(rng.choice(others)))
    if attr == "shape":
        return replace(scene, shape=str(rng.choice([s for s in SHAPES if s != scene.shape])))
    raise ValueError(f"unknown contrast {attr!r}; expected one of {ALL_CONTRASTS}")


def batch(rng: np.random.Generator, n: int, size: int = 32, drop: bool = True, contrast_pairs: bool = False,
          contrasts: tuple[str, ...] = CONTRASTS):
    """n scenes -> (images float [-1, 1] as [n, 3, size, size] numpy, captions, scenes).

    contrast_pairs: scene i + n/2 is scene i with one attribute of `contrasts` changed (see
    `contrasted`), both captions naming it, the rest of the caption the same."""
    if not contrast_pairs:
        scenes = sample_scenes(rng, n)
        captions = [caption(s, rng if drop else None) for s in scenes]
    else:
        if n % 2:
            raise ValueError(f"contrast_pairs needs an even batch size, got {n}")
        first = sample_scenes(rng, n // 2)
        attrs = [str(rng.choice(contrasts)) for _ in first]
        second = [contrasted(s, a, rng) for s, a in zip(first, attrs, strict=True)]
        scenes = first + second
        captions = [caption(s, rng if drop else None, keep=(a,)) for s, a in zip(first, attrs, strict=True)]
        captions += [_swap_word(c, s, t, a) for c, s, t, a in zip(captions, first, second, attrs, strict=True)]
    images = np.stack([shapes.render(s, size, BACKGROUNDS) for s in scenes]).astype(np.float32) / 127.5 - 1.0
    return images.transpose(0, 3, 1, 2), captions, scenes


def _swap_word(text: str, old: Scene, new: Scene, attr: str) -> str:
    """The first scene's caption for the second: the contrasted attribute's phrase replaced."""
    if not text:
        return text
    phrase = {"side": "on the {}", "size": "{} ", "background": "on a {} background", "shape": " {}"}[attr]
    was, now = getattr(old, attr), getattr(new, attr)
    return text.replace(phrase.format(was), phrase.format(now), 1)


def images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Pictures only (for the autoencoder): train_autoencoder's image source."""
    return batch(rng, n, size, drop=False)[0]
