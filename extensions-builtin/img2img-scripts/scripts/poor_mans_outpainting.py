"""Poor man's outpainting (A1111's img2img script): grow the canvas by `pixels` on the chosen sides,
and inpaint the new border tile by tile (tiles of the img2img width x height that overlap by
`pixels`; tiles entirely inside the old picture are left alone). script_args (A1111's order):
pixels, mask_blur, inpainting_fill (index: fill, original, latent noise, latent nothing), direction.
"""
from __future__ import annotations

import math

import gradio as gr
import img2img_script_tools as tools
from PIL import Image, ImageDraw

from modules import images, scripts
from modules.processing import Processed, process_images

DIRECTIONS = ("left", "right", "up", "down")
FILLS = ("fill", "original", "latent noise", "latent nothing")


def expanded(init: Image.Image, pixels: int, direction, blur: int):
    """(canvas, mask, latent mask, (left, up, right, down)): the picture on a canvas grown to a
    multiple of 64, the mask white over the new border (pulled 2 x blur into it for a soft seam)."""
    left, right, up, down = (pixels if d in direction else 0 for d in DIRECTIONS)
    width = math.ceil((init.width + left + right) / 64) * 64
    height = math.ceil((init.height + up + down) / 64) * 64
    right, down = width - init.width - left, height - init.height - up
    canvas = Image.new("RGB", (width, height))
    canvas.paste(init, (left, up))
    masks = []
    for inset in (blur * 2, blur // 2):
        mask = Image.new("L", (width, height), "white")
        ImageDraw.Draw(mask).rectangle((left + (inset if left else 0), up + (inset if up else 0),
                                        width - right - (inset if right else 0) - 1,
                                        height - down - (inset if down else 0) - 1), fill="black")
        masks.append(mask)
    return canvas, masks[0], masks[1], (left, up, right, down)


class Script(scripts.Script):
    def title(self):
        return "Poor man's outpainting"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128,
                           elem_id=self.elem_id("pixels"))
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=4,
                              elem_id=self.elem_id("mask_blur"))
        fill = gr.Radio(label="Masked content", choices=list(FILLS), value="fill", type="index",
                        elem_id=self.elem_id("inpainting_fill"))
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(DIRECTIONS),
                                     value=list(DIRECTIONS), elem_id=self.elem_id("direction"))
        return [pixels, mask_blur, fill, direction]

    def run(self, p, pixels=128, mask_blur=4, inpainting_fill=0, direction=DIRECTIONS):
        pixels, mask_blur = int(pixels), int(mask_blur)
        fill = FILLS.index(inpainting_fill) if isinstance(inpainting_fill, str) else int(inpainting_fill)
        if not p.init_images or not set(direction or ()) <= set(DIRECTIONS) or not 0 <= fill < len(FILLS):
            raise ValueError("Poor man's outpainting needs an init image, directions from left/right/up/down "
                             "and a masked-content index 0-3")
        if pixels >= min(p.width, p.height):
            raise ValueError(f"Poor man's outpainting: {pixels} pixels must be less than the tile size "
                             f"{p.width}x{p.height}")
        canvas, mask, latent_mask, (left, up, right, down) = expanded(p.init_images[0].convert("RGB"), pixels,
                                                                     direction or (), mask_blur)
        grids = [images.split_grid(im, tile_w=p.width, tile_h=p.height, overlap=pixels)
                 for im in (canvas, mask, latent_mask)]
        seed = next_seed = tools.fixed_seed(p)
        info = None
        for rows in zip(*(g.tiles for g in grids), strict=True):
            y, h = rows[0][0], rows[0][1]
            for cell, cell_mask, cell_latent in zip(rows[0][2], rows[1][2], rows[2][2], strict=True):
                x, w = cell[0], cell[1]
                if x >= left and x + w <= canvas.width - right and y >= up and y + h <= canvas.height - down:
                    continue  # inside the old picture: nothing to paint
                processed = process_images(tools.sub_job(
                    p, init_images=[cell[2]], image_mask=cell_mask[2], mask=None, latent_mask=cell_latent[2],
                    mask_blur_x=mask_blur, mask_blur_y=mask_blur, mask_blur=None, inpainting_fill=fill,
                    inpaint_full_res=False, batch_size=1, n_iter=1, seed=next_seed))
                info = info or processed.info
                next_seed = processed.seed + 1
                cell[2] = processed.images[processed.index_of_first_image]
        result = images.combine_grid(grids[0])
        tools.save_result(p, result, seed, info)
        return Processed(p, [result], seed=seed, info=info or "")
