"""depth2img tab (SD 2 depth model): image, optional depth map, the depth map used, the results."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr

from modules.context import AppContext
from modules.generation import GenerationRequest
from webui.ui import generation, widgets
from webui.ui.components import UploadImage


def create_tab(ctx: AppContext, ui):
    tab = "depth2img"
    gr.Markdown("For SD 2 depth checkpoints (512-depth-ema): the depth of the image (MiDaS, or your own "
                "grayscale depth map) keeps its shapes while the prompt repaints it. Without one, the shipped "
                "demo (64x64 shapes before a background: try \"a green circle and a yellow square\") is used.")
    with gr.Row():
        with gr.Column():
            prompt = widgets.prompt_row(tab, ui.style_names())
            with gr.Row():
                image = UploadImage(label="Image", type="pil", elem_id="depth2img_image")
                depth_map = UploadImage(label="Depth map (optional, white = near)", type="pil",
                                        image_mode="L", elem_id="depth2img_depth_map")
            sampler = widgets.sampler_row(tab, ui.sampler_names, ui.scheduler_labels)
            with gr.Row():
                cfg_scale = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")
                denoising = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label="Denoising strength",
                                      elem_id=f"{tab}_denoising_strength")
                batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
            seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab}_seed")
        with gr.Column():
            progress = gr.HTML(elem_id=f"{tab}_progress")
            gallery = gr.Gallery(label="Output", format="png", columns=2, elem_id=f"{tab}_gallery")
            depth_used = gr.Image(label="Depth map used", interactive=False, elem_id=f"{tab}_depth_used")
            infotext = gr.Textbox(label="Generation info", lines=3, interactive=False,
                                  elem_id=f"{tab}_generation_info")

    def generate(image, depth, prompt_text, negative, sampler_name, scheduler, steps, cfg, strength, seed_value,
                 batch):
        if image is None:
            raise gr.Error("Upload an image first")
        t0 = time.time()
        request = GenerationRequest("depth2img", {
            "image": image, "depth_map": depth, "prompt": prompt_text, "negative_prompt": negative,
            "sampler_name": sampler_name, "scheduler": scheduler, "steps": steps, "cfg_scale": cfg,
            "denoising_strength": strength, "seed": seed_value, "batch_size": batch})
        for kind, value, _ in generation.run_job(ctx, request):
            if kind == "progress":
                yield value, gr.skip(), gr.skip(), gr.skip()
            else:
                folder = Path(tempfile.mkdtemp(prefix="depth-", dir=ui.tmp_dir))
                files = [(generation.png_file(im, text, folder), None) for im, text in zip(value.images, value.infotexts,
                                                                                          strict=True)]
                yield generation.wait_seconds(t0), files, value.extra_images.get("depth"), value.infotext

    prompt.generate.click(generate, inputs=[image, depth_map, prompt.prompt, prompt.negative_prompt,
                                            sampler.sampler_name, sampler.scheduler, sampler.steps, cfg_scale,
                                            denoising, seed, batch_size],
                          outputs=[progress, gallery, depth_used, infotext], api_name="depth2img",
                          concurrency_id="generation", concurrency_limit=None)
    prompt.interrupt.click(lambda: ctx.jobs.interrupt() and None, api_visibility="private", queue=False)
    return None
