"""X/Y/Z plot: one image per combination of up to three parameters, in labelled grids.

Written against the public extension API only (modules.scripts, modules.processing,
modules.images, modules.shared), like any third-party extension.
"""
from __future__ import annotations

import copy
import random
from pathlib import Path

import gradio as gr
import xyz_axes
import xyz_draw

from modules import images, scripts, shared
from modules.processing import Processed, process_images


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        labels = [a.label for a in xyz_axes.AXES]
        controls = {}
        for axis, default in (("x", 1), ("y", 0), ("z", 0)):
            with gr.Row():
                controls[f"{axis}_type"] = gr.Dropdown(labels, value=labels[default], type="index",
                                                       label=f"{axis.upper()} type", elem_id=self.elem_id(f"{axis}_type"))
                controls[f"{axis}_values"] = gr.Textbox(label=f"{axis.upper()} values", lines=1,
                                                        elem_id=self.elem_id(f"{axis}_values"))
        with gr.Row():
            controls["draw_legend"] = gr.Checkbox(label="Draw legend", value=True, elem_id=self.elem_id("draw_legend"))
            controls["include_lone_images"] = gr.Checkbox(label="Include Sub Images", value=False,
                                                          elem_id=self.elem_id("include_lone_images"))
            controls["no_fixed_seeds"] = gr.Checkbox(label="Keep -1 for seeds", value=False,
                                                     elem_id=self.elem_id("no_fixed_seeds"))
        return controls

    def run(self, p, x_type, x_values, y_type, y_values, z_type, z_values, draw_legend=True,
            include_lone_images=False, no_fixed_seeds=False):
        axes = [xyz_axes.find_axis(t if t is not None else 0) for t in (x_type, y_type, z_type)]
        values = [axis.parse(text or "") if axis.label != "Nothing" else [None]
                  for axis, text in zip(axes, (x_values, y_values, z_values), strict=True)]
        for axis, vals in zip(axes, values, strict=True):
            if not vals:
                raise ValueError(f"X/Y/Z plot: the {axis.label} axis has no values")
        total = len(values[0]) * len(values[1]) * len(values[2])
        if total > 1000:
            raise ValueError(f"X/Y/Z plot: {total} images is too many; use fewer values")
        if not no_fixed_seeds and int(p.seed) == -1:
            p.seed = random.randrange(4294967294)  # every cell shares one seed
        p.do_not_save_grid = True
        model_before = shared.models.current.info.title if shared.models.current is not None else None
        try:
            return self._plot(p, axes, values, draw_legend, include_lone_images)
        finally:
            if "Checkpoint name" in [a.label for a in axes] and model_before is not None:
                shared.models.load(model_before)

    def _plot(self, p, axes, values, draw_legend, include_lone_images):
        (ax, ay, az), (xs, ys, zs) = axes, values
        cells, infotexts, first = [], [], None
        job = p.job
        if job is not None:
            job.job_count = len(xs) * len(ys) * len(zs)
        for z in zs:
            rows = []
            for y in ys:
                row = []
                for x in xs:
                    if job is not None and job.interrupted:
                        break
                    cell = copy.copy(p)
                    cell.extra_generation_params = dict(p.extra_generation_params)
                    cell.override_settings = dict(p.override_settings)
                    for axis, value in ((ax, x), (ay, y), (az, z)):
                        if axis.label != "Nothing":
                            axis.apply(cell, value)
                    processed = process_images(cell)
                    first = first or processed
                    i = processed.index_of_first_image
                    row.append(processed.images[i])
                    infotexts.append(processed.infotexts[i])
                rows.append(row)
            cells.append(rows)
        if first is None:
            raise ValueError("X/Y/Z plot was interrupted before the first image")
        grids = []
        for zi, z in enumerate(zs):
            rows = [r for r in cells[zi] if r]
            if not rows or len(rows[-1]) != len(xs):
                break
            grids.append(xyz_draw.labelled_grid(rows, [xyz_axes.label(ax, x) for x in xs],
                                                [xyz_axes.label(ay, y) for y in ys][:len(rows)],
                                                xyz_axes.label(az, z), legend=draw_legend))
        grid_info = infotexts[0]
        for grid in grids:
            self._save_grid(p, grid, grid_info)
        lone = [im for z in cells for row in z for im in row]
        out_images = grids + (lone if include_lone_images else [])
        out_infotexts = [grid_info] * len(grids) + (infotexts if include_lone_images else [])
        return Processed(p, out_images, seed=first.seed, info=grid_info, infotexts=out_infotexts,
                         all_prompts=first.all_prompts, all_seeds=first.all_seeds,
                         index_of_first_image=len(grids) if include_lone_images else 0)

    def _save_grid(self, p, grid, info: str) -> None:
        opts = p.opts
        if opts is None or not opts.grid_save:
            return
        folder = p.outpath_grids or (opts.outdir_img2img_grids if p.is_img2img else opts.outdir_txt2img_grids)
        folder = Path(folder)
        if not folder.is_absolute() and p.env is not None and p.env.data_dir is not None:
            folder = Path(p.env.data_dir) / folder
        images.save_image(grid, folder, "xyz_grid", seed=p.seed, prompt=p.prompt, info=info, opts=opts, p=p,
                          grid=True, callbacks=p.env.callbacks if p.env is not None else None)
