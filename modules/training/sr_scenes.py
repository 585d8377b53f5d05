"""Super-resolution pairs of the synthetic shapes scenes (shapes.py): what the LDSR demo learns.

The high-resolution image is a scene rendered at 128x128 (anti-aliased, shapes.render); the low-res
one is that image blurred (Gaussian, radius 3 px) and downscaled 4x with PIL's bicubic filter (32x32):
a blur-and-downsample degradation, a light version of the BSR degradations the real LDSR (bsr_sr) was
trained on. The LDSR demo learns to go back. (Bicubic upscaling of a 4x4 low-res sheet scores 30.4-31.4
dB against the truth; without the blur 34.6 dB. The blur was chosen when the demo's first stage alone,
encoding and decoding the truth, reached 32.9 dB; after its decoder fine-tune it reaches 35.5 dB.)
`grid` lays several scenes out as one image (the held-out test sheet); `psnr` measures the result.
Everything is drawn from a numpy Generator, so a seed gives the same pairs.

Training uses `canvases`: small gray crops holding 1-3 of the scenes' shapes (same colours, jitter and
drawing) at random sizes (6 to 80 px, the scenes' own shapes are 54-72 px) and positions, partly cut
off at the border. Why not crops of the scenes themselves: the first stage (the LDM autoencoder) uses
GroupNorm, whose statistics come from the whole image it is given, and LDSR decodes 512 px tiles. On
plain gray crops those statistics depend on how much of the image a shape covers; a first stage
trained on 32 px crops of scenes decoded 32 px tiles at 31.2 dB and the 512 px sheet at 21.2 dB
(wrong, washed-out colours). Shapes of every size teach it the whole range of coverages.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from . import shapes

SCALE = 4
BLUR_RADIUS = 3.0  # Gaussian blur of the high-res image before downscaling (in high-res pixels)
HR_SIZE = 128
LR_SIZE = HR_SIZE // SCALE


def canvas(rng: np.random.Generator, size: int, max_shapes: int = 3) -> np.ndarray:
    """uint8 [size, size, 3]: a gray canvas with 1..max_shapes shapes of random size and place."""
    bg = np.array(shapes.BACKGROUNDS["gray"], dtype=np.float32)
    out = np.broadcast_to(bg, (size, size, 3)).copy()
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        jitter = tuple(int(v) for v in rng.integers(-12, 13, size=3))
        color = str(rng.choice(list(shapes.COLORS)))
        width = float(rng.uniform(6, 80)) / size
        scene = shapes.Scene(color=color, shape=str(rng.choice(shapes.SHAPES)), size="large", side="left",
                             background="gray", width=width, cx=float(rng.uniform(-0.2, 1.2)),
                             cy=float(rng.uniform(-0.2, 1.2)), color_jitter=jitter)
        drawn = shapes.render(scene, size).astype(np.float32)
        fill = np.clip(np.array(shapes.COLORS[color], dtype=np.float32) + jitter, 0, 255)
        d = fill - bg  # anti-aliased edges are blends of fill and background: alpha along that line
        alpha = np.clip((drawn - bg) @ d / max(float(d @ d), 1.0), 0.0, 1.0)[..., None]
        out = out * (1 - alpha) + fill * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def canvas_pairs(rng: np.random.Generator, n: int, lr_size: int) -> tuple[np.ndarray, np.ndarray]:
    """n canvases of 4 * lr_size px -> (high-res, low-res) in [-1, 1], as `pairs`."""
    hr_list, lr_list = [], []
    for _ in range(n):
        hr = Image.fromarray(canvas(rng, lr_size * SCALE))
        hr_list.append(np.asarray(hr))
        lr_list.append(np.asarray(degrade(hr)))
    return to_model(hr_list), to_model(lr_list)


def degrade(hr: Image.Image) -> Image.Image:
    """The low-res image of a high-res one: Gaussian blur, then bicubic (antialiased) downscale by 4."""
    return hr.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)).resize((hr.width // SCALE, hr.height // SCALE),
                                                                   Image.BICUBIC)


def to_model(images: list) -> np.ndarray:
    """uint8 RGB arrays -> float [-1, 1] as [N, 3, H, W]."""
    return (np.stack(images).astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def pairs(rng: np.random.Generator, n: int, crop: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random scenes -> (high-res [n, 3, 128, 128], low-res [n, 3, 32, 32]) in [-1, 1].

    crop > 0: a random crop of `crop` low-res pixels (and the matching 4x crop of the high-res image)."""
    hr_list, lr_list = [], []
    for scene in shapes.sample_scenes(rng, n):
        hr = Image.fromarray(shapes.render(scene, HR_SIZE))
        lr = degrade(hr)
        if crop:
            x, y = (int(v) for v in rng.integers(0, LR_SIZE - crop + 1, size=2))
            lr = lr.crop((x, y, x + crop, y + crop))
            hr = hr.crop((x * SCALE, y * SCALE, (x + crop) * SCALE, (y + crop) * SCALE))
        hr_list.append(np.asarray(hr))
        lr_list.append(np.asarray(lr))
    return to_model(hr_list), to_model(lr_list)


def grid(rng: np.random.Generator, rows: int, cols: int) -> tuple[Image.Image, Image.Image]:
    """rows x cols random scenes side by side: (high-res sheet, its low-res version)."""
    sheet = Image.new("RGB", (cols * HR_SIZE, rows * HR_SIZE))
    for i, scene in enumerate(shapes.sample_scenes(rng, rows * cols)):
        sheet.paste(Image.fromarray(shapes.render(scene, HR_SIZE)), ((i % cols) * HR_SIZE, (i // cols) * HR_SIZE))
    return sheet, degrade(sheet)


def psnr(image: Image.Image, reference: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (8-bit peak 255)."""
    a = np.asarray(image.convert("RGB"), dtype=np.float64)
    b = np.asarray(reference.convert("RGB"), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: sizes differ ({image.size} vs {reference.size})")
    mse = ((a - b) ** 2).mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
