"""SD upscale (A1111's img2img script of that title): upscale the picture with any upscaler of the
table, cut it into overlapping tiles of the img2img width x height, run img2img on every tile, and
blend the tiles back together. script_args (A1111's order): info, overlap, upscaler_index, scale_factor.
"""
from __future__ import annotations

import math

import gradio as gr
import img2img_script_tools as tools

from modules import images, scripts, shared
from modules.processing import Processed, process_images


class Script(scripts.Script):
    def title(self):
        return "SD upscale"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        names = [u.name for u in shared.sd_upscalers]
        info = gr.HTML("<p style=\"margin-bottom:0.75em\">Will upscale the image by the selected scale factor; "
                       "use width and height sliders to set tile size</p>")
        overlap = gr.Slider(minimum=0, maximum=256, step=16, label="Tile overlap", value=64,
                            elem_id=self.elem_id("overlap"))
        scale_factor = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor", value=2.0,
                                 elem_id=self.elem_id("scale_factor"))
        upscaler_index = gr.Radio(label="Upscaler", choices=names, value=names[0], type="index",
                                  elem_id=self.elem_id("upscaler_index"))
        return [info, overlap, upscaler_index, scale_factor]

    def run(self, p, _info, overlap=64, upscaler_index=0, scale_factor=2.0):
        if not p.init_images:
            raise ValueError("SD upscale needs an init image")
        upscalers = shared.sd_upscalers
        upscaler = upscalers[tools.upscaler_index(upscalers, upscaler_index)]
        overlap, scale_factor = int(overlap), float(scale_factor)
        if overlap >= min(p.width, p.height):
            raise ValueError(f"SD upscale: tile overlap {overlap} must be smaller than the tile size "
                             f"{p.width}x{p.height} (the width and height sliders)")
        seed = tools.fixed_seed(p)
        p.extra_generation_params["SD upscale overlap"] = overlap
        p.extra_generation_params["SD upscale upscaler"] = upscaler.name
        source = p.init_images[0].convert("RGB")
        big = upscaler.scaler.upscale(source, scale_factor, upscaler.data_path) if upscaler.name != "None" else source
        grid = images.split_grid(big, tile_w=p.width, tile_h=p.height, overlap=overlap)
        tiles = [cell for _y, _h, row in grid.tiles for cell in row]
        batch = max(1, int(p.batch_size))
        results, info, infotexts = [], None, []
        for n in range(max(1, int(p.n_iter))):
            done = []
            next_seed = seed + n
            for start in range(0, len(tiles), batch):
                chunk = [cell[2] for cell in tiles[start:start + batch]]
                processed = process_images(tools.sub_job(p, init_images=chunk, batch_size=len(chunk), n_iter=1,
                                                         seed=next_seed))
                info = info or processed.info
                next_seed = processed.seed + 1
                done += processed.images[:len(chunk)]
            for cell, image in zip(tiles, done, strict=True):
                cell[2] = image
            combined = images.combine_grid(grid)
            results.append(combined)
            infotexts.append(info)
            tools.save_result(p, combined, seed + n, info)
        batches = math.ceil(len(tiles) / batch)
        p.comments[f"SD upscale: {len(tiles)} tiles in {batches} batches per image"] = 1
        return Processed(p, results, seed=seed, info=info or "", infotexts=infotexts)
