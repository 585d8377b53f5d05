"""Outpainting mk2 (A1111's img2img script): grow the picture by `pixels` on each chosen side in
turn; the new strip starts as noise matched to the picture (its colours and, through the Fourier
transform, its texture: the spectrum's magnitude raised to the fall-off exponent `noise_q`, with
`color_variation` of random colour) and is inpainted, the rest kept, in a window of the img2img
width x height at that edge. script_args (A1111's order): info, pixels, mask_blur, direction,
noise_q, color_variation.
"""
from __future__ import annotations

import gradio as gr
import img2img_script_tools as tools
import numpy as np
from PIL import Image

from modules import scripts
from modules.processing import Processed, process_images

DIRECTIONS = ("left", "right", "up", "down")


def matched_noise(known: np.ndarray, hole: np.ndarray, noise_q: float, color_variation: float,
                  rng: np.random.Generator) -> np.ndarray:
    """known: [H, W, 3] in 0..1; hole: [H, W] 1 where new. Noise shaped by the known pixels'
    spectrum (|F|^noise_q), scaled to their per-channel mean and spread, placed in the hole."""
    out = known.copy()
    weights = 1.0 - hole
    if weights.sum() < 1:
        return out
    mean = (known * weights[..., None]).sum((0, 1)) / weights.sum()
    std = np.sqrt((((known - mean) ** 2) * weights[..., None]).sum((0, 1)) / weights.sum()) + 1e-3
    for c in range(3):
        centred = (known[..., c] - mean[c]) * weights
        magnitude = np.abs(np.fft.fft2(centred)) ** max(noise_q, 0.0)
        shaped = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal(hole.shape)) * magnitude))
        shaped = (shaped - shaped.mean()) / (shaped.std() + 1e-8)
        shift = color_variation * rng.standard_normal()
        out[..., c] = np.where(hole > 0, mean[c] + shift + shaped * std[c], known[..., c])
    return np.clip(out, 0.0, 1.0)


def grow(image: Image.Image, side: str, pixels: int) -> tuple[Image.Image, np.ndarray]:
    """The picture on a canvas `pixels` larger on `side`, and the hole mask of the new strip."""
    dx = pixels if side in ("left", "right") else 0
    dy = pixels if side in ("up", "down") else 0
    canvas = Image.new("RGB", (image.width + dx, image.height + dy))
    canvas.paste(image, (dx if side == "left" else 0, dy if side == "up" else 0))
    hole = np.zeros((canvas.height, canvas.width), dtype=np.float64)
    if side == "left":
        hole[:, :pixels] = 1
    elif side == "right":
        hole[:, -pixels:] = 1
    elif side == "up":
        hole[:pixels] = 1
    else:
        hole[-pixels:] = 1
    return canvas, hole


def edge_window(size: tuple[int, int], side: str, width: int, height: int) -> tuple[int, int, int, int]:
    """The width x height box (within the canvas) at the growing edge."""
    w, h = min(width, size[0]), min(height, size[1])
    x = 0 if side != "right" else size[0] - w
    y = 0 if side != "down" else size[1] - h
    if side in ("left", "right"):
        y = (size[1] - h) // 2
    else:
        x = (size[0] - w) // 2
    return x, y, x + w, y + h


class Script(scripts.Script):
    def title(self):
        return "Outpainting mk2"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Recommended settings: Sampling Steps: 80-100, "
                       "Sampler: Euler a, Denoising strength: 0.8</p>")
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=8,
                              elem_id=self.elem_id("mask_blur"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(DIRECTIONS),
                                     value=list(DIRECTIONS), elem_id=self.elem_id("direction"))
        noise_q = gr.Slider(label="Fall-off exponent (lower=higher detail)", minimum=0.0, maximum=4.0, step=0.01,
                            value=1.0, elem_id=self.elem_id("noise_q"))
        color_variation = gr.Slider(label="Color variation", minimum=0.0, maximum=1.0, step=0.01, value=0.05,
                                    elem_id=self.elem_id("color_variation"))
        return [info, pixels, mask_blur, direction, noise_q, color_variation]

    def run(self, p, _info, pixels=128, mask_blur=8, direction=DIRECTIONS, noise_q=1.0, color_variation=0.05):
        pixels, mask_blur = int(pixels), int(mask_blur)
        if not p.init_images or not set(direction or ()) <= set(DIRECTIONS):
            raise ValueError("Outpainting mk2 needs an init image and directions from left/right/up/down")
        seed = next_seed = tools.fixed_seed(p)
        p.extra_generation_params.update({"Outpainting mk2 pixels": pixels, "Outpainting mk2 direction":
                                          ",".join(d for d in DIRECTIONS if d in direction)})
        rng = np.random.default_rng(seed)
        image, info = p.init_images[0].convert("RGB"), None
        for side in (d for d in DIRECTIONS if d in (direction or ())):
            canvas, hole = grow(image, side, pixels)
            noised = matched_noise(np.asarray(canvas, dtype=np.float64) / 255, hole, float(noise_q),
                                   float(color_variation), rng)
            canvas = Image.fromarray((noised * 255 + 0.5).astype(np.uint8), "RGB")
            box = edge_window(canvas.size, side, p.width, p.height)
            mask = Image.fromarray((hole * 255).astype(np.uint8), "L").crop(box)
            processed = process_images(tools.sub_job(
                p, init_images=[canvas.crop(box)], image_mask=mask, mask=None, latent_mask=None,
                mask_blur_x=mask_blur, mask_blur_y=mask_blur, mask_blur=None, inpainting_fill=1,
                inpaint_full_res=False, width=box[2] - box[0], height=box[3] - box[1], batch_size=1, n_iter=1,
                seed=next_seed))
            info = info or processed.info
            next_seed = processed.seed + 1
            canvas.paste(processed.images[processed.index_of_first_image], box[:2])
            image = canvas
        tools.save_result(p, image, seed, info)
        return Processed(p, [image], seed=seed, info=info or "")
