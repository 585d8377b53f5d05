"""Extras tab: upscale one image (SD x4 upscaler, Lanczos, Nearest); saved to the extras folder."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from modules.context import AppContext
from modules.generation import GenerationRequest
from webui.ui import generation
from webui.ui.components import UploadImage


@dataclass
class ExtrasTab:
    image: UploadImage  # "send to extras" fills it


def create_tab(ctx: AppContext, ui):
    names = ctx.services.upscalers.names()
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
        to_size = int(w or 0) > 0 and int(h or 0) > 0
        request = GenerationRequest("extras", {
            "image": img, "upscaler_1": name, "resize_mode": 1 if to_size else 0, "upscaling_resize": s,
            "upscaling_resize_w": int(w or 0) or 1, "upscaling_resize_h": int(h or 0) or 1, "upscaling_crop": False,
            "prompt": text})
        for kind, value, _ in generation.run_job(ctx, request):
            if kind == "progress":
                yield value, gr.skip(), gr.skip()
            else:
                folder = Path(tempfile.mkdtemp(prefix="extras-", dir=ui.tmp_dir))
                yield (generation.wait_seconds(t0), [(generation.png_file(value.images[0], value.infotext, folder), None)],
                       value.infotext)

    run_button.click(run, inputs=[image, upscaler, scale, to_w, to_h, prompt], outputs=[progress, gallery, info],
                     api_name="extras", concurrency_id="generation", concurrency_limit=None)
    return ExtrasTab(image)
