"""Synthetic scenes whose depth is known: coloured shapes at different distances before a background.

The data of the depth2img and x4 demo models. A pinhole camera looks level at a wall standing
`wall_distance` away; a floor runs from the wall towards the camera, the horizon at image row
`horizon` (a fraction of the height), its nearest visible point (the bottom row) `floor_distance`
away. A floor point at distance Z appears at row y = horizon + (1 - horizon) * floor_distance / Z,
so its inverse depth (MiDaS's output: larger = nearer) 1 / Z = (y - horizon) / ((1 - horizon) *
floor_distance) is linear in the row; the wall's is constant. Each shape is a flat cut-out facing
the camera at distance Z, hanging in front of the background (nearer than any of it, so its whole
outline shows in the depth map), its width SHAPE_SIZE / Z: nearer shapes are larger - the cue a
depth estimator learns from the picture alone. Shapes are drawn far to near (nearer ones hide
farther ones), and the inverse-depth map is drawn with the same outlines.

Measured with shapes standing on a floor that reached the camera (an earlier version): a shape's
lower part then had the depth of the floor around it, the depth map showed only its top, and the
depth UNet never learned which outline was the circle (1300 steps: colours always by position).

Captions name every shape with its colour in random order ("a blue square and a red circle"), so
the only way to give each outline its colour is to tell the shapes apart. A share is empty: the
unconditional prompt that classifier-free guidance needs. Seeded like shapes.py: the same
`numpy.random.Generator` state gives the same scenes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from .shapes import COLORS, SHAPES, SUPERSAMPLE

SHAPE_SIZE = 0.5  # width of a shape at distance 1, as a fraction of the image width
DISTANCES = (1.2, 2.4)  # shapes hang this far away: 13 to 27 px wide in a 64 px picture
FLOOR_DISTANCES = (2.8, 3.4)  # the floor's nearest visible point: farther than any shape
WALL_DISTANCES = (5.0, 8.0)
HORIZONS = (0.15, 0.35)  # the horizon's row, fraction of the height
THINGS_P = {1: 0.2, 2: 0.6, 3: 0.2}  # how many shapes a scene holds
EMPTY_CAPTION_P = 0.1
MARGIN = 0.03  # shapes keep this far (fraction of the picture) from its border


@dataclass(frozen=True)
class Thing:
    color: str
    shape: str
    x: float  # centre, fractions of the picture
    y: float
    distance: float  # Z, in the units of the floor distances
    jitter: tuple[int, int, int] = (0, 0, 0)  # colour variation

    @property
    def width(self) -> float:
        return SHAPE_SIZE / self.distance


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    horizon: float = 0.25
    floor_distance: float = 3.0
    wall_distance: float = 6.0
    wall: int = 170  # wall gray level
    floor: int = 95  # floor gray level at the wall; it brightens towards the camera

    @property
    def wall_line(self) -> float:
        """Row (fraction) where the floor meets the wall."""
        return self.horizon + (1 - self.horizon) * self.floor_distance / self.wall_distance

    def outline(self, thing: Thing, size: float) -> tuple[str, list]:
        """("ellipse" | "polygon", points) of a shape in pixels of a picture `size` wide."""
        w, x, y = thing.width * size, thing.x * size, thing.y * size
        if thing.shape == "circle":
            return "ellipse", [x - w / 2, y - w / 2, x + w / 2, y + w / 2]
        if thing.shape == "square":
            s = 0.9 * w / 2  # a square looks bigger than a circle of the same width
            return "polygon", [(x - s, y - s), (x + s, y - s), (x + s, y + s), (x - s, y + s)]
        if thing.shape == "triangle":
            return "polygon", [(x, y - w / 2), (x + w / 2, y + w / 2), (x - w / 2, y + w / 2)]
        raise ValueError(f"unknown shape {thing.shape!r}; expected one of {SHAPES}")


def thing_color(thing: Thing) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLORS[thing.color], thing.jitter, strict=True))


def _draw(draw: ImageDraw.ImageDraw, kind: str, points: list, fill) -> None:
    if kind == "ellipse":
        draw.ellipse(points, fill=fill)
    else:
        draw.polygon(points, fill=fill)


def far_to_near(scene: Scene) -> list[Thing]:
    return sorted(scene.things, key=lambda t: -t.distance)


def render(scene: Scene, size: int = 64) -> np.ndarray:
    """The picture as uint8 RGB [size, size, 3] (drawn at 4x and box-filtered: anti-aliased)."""
    big = size * SUPERSAMPLE
    rows = (np.arange(big) + 0.5) / big
    floor = (rows - scene.wall_line) / (1 - scene.wall_line)  # 0 at the wall, 1 at the bottom
    gray = np.where(rows < scene.wall_line, scene.wall, scene.floor + 40 * np.clip(floor, 0, 1))
    background = np.broadcast_to(gray[:, None, None], (big, big, 3))
    img = Image.fromarray(background.round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for thing in far_to_near(scene):
        _draw(draw, *scene.outline(thing, big), thing_color(thing))
    return np.asarray(img.resize((size, size), Image.Resampling.BOX))


def render_depth(scene: Scene, size: int = 64) -> np.ndarray:
    """Inverse depth 1 / Z as float32 [size, size] (1 = the floor at the bottom row)."""
    big = size * SUPERSAMPLE
    rows = (np.arange(big) + 0.5) / big
    floor = (rows - scene.horizon) / ((1 - scene.horizon) * scene.floor_distance)
    inv = np.where(rows < scene.wall_line, 1 / scene.wall_distance, floor)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(inv[:, None], (big, big)), dtype=np.float32), "F")
    draw = ImageDraw.Draw(img)
    for thing in far_to_near(scene):
        _draw(draw, *scene.outline(thing, big), float(1 / thing.distance))
    return np.asarray(img.resize((size, size), Image.Resampling.BOX), dtype=np.float32)


def render_masks(scene: Scene, size: int = 64) -> list[np.ndarray]:
    """bool [size, size] per thing (in scene.things order): the pixels where it is visible."""
    label = Image.new("L", (size * SUPERSAMPLE,) * 2, 0)
    draw = ImageDraw.Draw(label)
    order = far_to_near(scene)
    for thing in order:
        kind, points = scene.outline(thing, size * SUPERSAMPLE)
        _draw(draw, kind, points, 1 + scene.things.index(thing))
    # a pixel belongs to a shape when most of its 4x4 sub-pixels do
    sub = np.asarray(label).reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).transpose(0, 2, 1, 3).reshape(size, size, -1)
    return [(sub == i + 1).mean(-1) > 0.5 for i in range(len(scene.things))]


def _place(rng: np.random.Generator, widths: list[float], tries: int = 20) -> list[tuple[float, float]]:
    """Centres (x, y) for shapes of these widths, inside the picture and not hiding each other much."""
    for _ in range(tries):
        centres = [(float(rng.uniform(w / 2 + MARGIN, 1 - w / 2 - MARGIN)),
                    float(rng.uniform(w / 2 + MARGIN, 1 - w / 2 - MARGIN))) for w in widths]
        if all(np.hypot(centres[i][0] - centres[j][0], centres[i][1] - centres[j][1]) > 0.9 * (widths[i] + widths[j]) / 2
               for i in range(len(widths)) for j in range(i)):
            return centres
    return centres


def sample_scene(rng: np.random.Generator, n: int | None = None) -> Scene:
    n = n or int(rng.choice(list(THINGS_P), p=list(THINGS_P.values())))
    shapes = rng.choice(SHAPES, size=n, replace=False)  # one of each kind: the caption can name them apart
    colors = rng.choice(list(COLORS), size=n, replace=True)
    distances = [float(d) for d in rng.uniform(*DISTANCES, size=n)]
    centres = _place(rng, [SHAPE_SIZE / d for d in distances])
    things = tuple(Thing(str(c), str(s), x, y, d, tuple(int(v) for v in rng.integers(-12, 13, size=3)))
                   for c, s, (x, y), d in zip(colors, shapes, centres, distances, strict=True))
    return Scene(things=things, horizon=float(rng.uniform(*HORIZONS)),
                 floor_distance=float(rng.uniform(*FLOOR_DISTANCES)),
                 wall_distance=float(rng.uniform(*WALL_DISTANCES)),
                 wall=int(rng.integers(150, 205)), floor=int(rng.integers(70, 115)))


def recoloured(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same shapes in the same places, the colours moved round (each shape takes the next one's);
    a lone shape, or shapes of one colour, get other colours."""
    colors = [t.color for t in scene.things]
    if len(set(colors)) > 1:
        new = colors[1:] + colors[:1]
    else:
        others = [c for c in COLORS if c != colors[0]]
        new = [str(c) for c in rng.choice(others, size=len(colors))]
    return replace(scene, things=tuple(replace(t, color=c) for t, c in zip(scene.things, new, strict=True)))


def _names(scene: Scene, order) -> str:
    names = [f"{'an' if t.color[0] in 'aeiou' else 'a'} {t.color} {t.shape}" for t in (scene.things[i] for i in order)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """"a red circle and a blue square" (every shape named; random order and empty captions with rng)."""
    if rng is None:
        return _names(scene, range(len(scene.things)))
    if rng.random() < EMPTY_CAPTION_P:
        return ""
    return _names(scene, rng.permutation(len(scene.things)))


def batch(rng: np.random.Generator, n: int, size: int = 64, swap_pairs: bool = False):
    """n random scenes -> (images float [-1, 1] [n, 3, size, size], inverse depth [n, 1, size, size],
    captions, scenes).

    swap_pairs: the second half of the batch is the first half recoloured (same shapes, same places,
    same depth) with its caption naming the shapes in the same order: the colour words are the only
    thing that tells a pair apart, so a model trained on them with shared noise must learn which
    colour goes with which shape (as shapes.batch's mirror pairs teach left and right).
    """
    if not swap_pairs:
        scenes = [sample_scene(rng) for _ in range(n)]
        captions = [caption(s, rng) for s in scenes]
    else:
        if n % 2:
            raise ValueError(f"swap_pairs needs an even batch size, got {n}")
        first = [sample_scene(rng) for _ in range(n // 2)]
        second = [recoloured(s, rng) for s in first]
        scenes = first + second
        pairs = []
        for a, b in zip(first, second, strict=True):
            empty = rng.random() < EMPTY_CAPTION_P
            order = rng.permutation(len(a.things))
            pairs.append(("", "") if empty else (_names(a, order), _names(b, order)))
        captions = [p[0] for p in pairs] + [p[1] for p in pairs]
    images = np.stack([render(s, size) for s in scenes]).astype(np.float32) / 127.5 - 1.0
    depth = np.stack([render_depth(s, size) for s in scenes])[:, None]
    return images.transpose(0, 3, 1, 2), depth, captions, scenes
