"""Extras tab: upscale one image (SD x4 upscaler, Lanczos, Nearest); saved to the extras folder."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from modules.context import AppContext
from webui.ui import generation
from webui.ui.components import UploadImage


@dataclass
class ExtrasTab:
    image: UploadImage  # "send to extras" fills it


def upscale(ctx: AppContext, image, name: str, scale: float, to_w: int, to_h: int, prompt: str, job):
    from modules import upscalers
    from modules.infotext import create_infotext

    width, height = upscalers.target_size(image.width, image.height, float(scale), int(to_w), int(to_h))
    limit = ctx.opts.img_max_size * 4
    if max(width, height) > limit:
        raise ValueError(f"{width}x{height} is over the limit of {limit} px per side: upscale by less")
    result = upscalers.upscale_with(ctx.services.get("upscalers") or {}, image, name, width, height,
                                    prompt=prompt or "")
    params = {"Postprocess upscale to": f"{width}x{height}", "Postprocess upscaler": name}
    return result, create_infotext(prompt or "", "", params)


def create_tab(ctx: AppContext, ui):
    from modules import upscalers
    names = upscalers.upscaler_names()
    with gr.Row():
        with gr.Column():
            image = UploadImage(label="Source", type="pil", elem_id="extras_image")
            upscaler = gr.Dropdown(label="Upscaler", choices=names, value="Lanczos", elem_id="extras_upscaler_1")
            with gr.Tabs():
                with gr.Tab("Scale by", elem_id="extras_scale_by_tab"):
                    scale = gr.Slider(1.0, 8.0, value=4.0, step=0.05, label="Resize", elem_id="extras_upscaling_resize")
                with gr.Tab("Scale to", elem_id="extras_scale_to_tab"):
                    with gr.Row():
                        to_w = gr.Slider(0, 8192, value=0, step=8, label="Width (0: scale by)",
                                         elem_id="extras_upscaling_resize_w")
                        to_h = gr.Slider(0, 8192, value=0, step=8, label="Height (0: scale by)",
                                         elem_id="extras_upscaling_resize_h")
            prompt = gr.Textbox(label="Prompt (SD x4 only)", lines=2, elem_id="extras_prompt")
            run_button = gr.Button("Generate", variant="primary", elem_id="extras_generate")
        with gr.Column():
            progress = gr.HTML(elem_id="extras_progress")
            gallery = gr.Gallery(label="Result", format="png", elem_id="extras_gallery")
            info = gr.Textbox(label="Info", interactive=False, elem_id="extras_generation_info")

    def run(img, name, s, w, h, text):
        if img is None:
            raise gr.Error("Upload an image first")
        t0 = time.time()
        for kind, value, _ in generation.run_job(ctx, "extras", lambda job: upscale(ctx, img, name, s, w, h, text, job)):
            if kind == "progress":
                yield value, gr.skip(), gr.skip()
            else:
                result, infotext = value
                generation.save_outputs(ctx, [result], [infotext], "outdir_extras_samples")
                folder = Path(tempfile.mkdtemp(prefix="extras-", dir=ui.tmp_dir))
                yield generation.wait_seconds(t0), [(generation.png_file(result, infotext, folder), None)], infotext

    run_button.click(run, inputs=[image, upscaler, scale, to_w, to_h, prompt], outputs=[progress, gallery, info],
                     api_name="extras", concurrency_id="generation", concurrency_limit=None)
    return ExtrasTab(image)
