"""img2img tab with A1111's sub-tabs: img2img, sketch, inpaint, inpaint upload, batch.

Masks are drawn with gr.ImageEditor: the mask is the alpha of the drawn layers (Gradio 6).
"""
from __future__ import annotations

import time

import gradio as gr

from modules.context import AppContext
from modules.processing.objects import INPAINTING_FILL, RESIZE_MODES
from webui.ui import image_inputs, tab_common, widgets
from webui.ui.components import UploadImage, UploadImageEditor

MODES = ("img2img", "sketch", "inpaint", "inpaint upload", "batch")


def create_tab(ctx: AppContext, ui) -> tab_common.GenerationTab:
    tab = "img2img"
    prompt = widgets.prompt_row(tab, ui.style_names())
    ui.extra_networks(tab)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, elem_id=f"{tab}_settings"):
            mode = gr.State("img2img")
            with gr.Tabs(elem_id="mode_img2img"):
                with gr.Tab("img2img", elem_id="img2img_img2img_tab") as t0:
                    init_img = UploadImage(label="Image for img2img", type="pil", image_mode="RGBA",
                                        elem_id="img2img_image", height=420)
                with gr.Tab("Sketch", elem_id="img2img_img2img_sketch_tab") as t1:
                    sketch = UploadImageEditor(label="Sketch", type="pil", elem_id="img2img_sketch", height=420,
                                            brush=gr.Brush(colors=["#000000", "#ff0000", "#00ff00", "#0000ff",
                                                                   "#ffffff"], color_mode="defaults"))
                with gr.Tab("Inpaint", elem_id="img2img_inpaint_tab") as t2:
                    inpaint = UploadImageEditor(label="Image for inpainting with mask", type="pil",
                                             elem_id="img2maskimg", height=420, layers=False,
                                             brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"))
                with gr.Tab("Inpaint upload", elem_id="img2img_inpaint_upload_tab") as t3:
                    upload_img = UploadImage(label="Image", type="pil", image_mode="RGBA", elem_id="img_inpaint_base")
                    upload_mask = UploadImage(label="Mask (white = inpaint)", type="pil", elem_id="img_inpaint_mask")
                with gr.Tab("Batch", elem_id="img2img_batch_tab") as t4:
                    gr.Markdown("Process every image of a folder on this machine"
                                + ("" if ctx.localhost_only else
                                   " (disabled: the server listens beyond localhost)"))
                    batch_in = gr.Textbox(label="Input directory", elem_id="img2img_batch_input_dir",
                                          interactive=ctx.localhost_only)
                    batch_out = gr.Textbox(label="Output directory (empty: the usual img2img folder)",
                                           elem_id="img2img_batch_output_dir", interactive=ctx.localhost_only)
                    batch_mask = gr.Textbox(label="Inpaint mask directory (optional)",
                                            elem_id="img2img_batch_inpaint_mask_dir", interactive=ctx.localhost_only)
            for t, name in zip((t0, t1, t2, t3, t4), MODES, strict=True):
                t.select(lambda n=name: n, outputs=mode, api_visibility="private", queue=False)
            resize_mode = gr.Radio(list(RESIZE_MODES), value=RESIZE_MODES[0], type="index", label="Resize mode",
                                   elem_id="resize_mode")
            with gr.Accordion("Inpaint settings", open=True, elem_id="img2img_inpaint_controls"):
                with gr.Row():
                    mask_blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur", elem_id="img2img_mask_blur")
                    mask_invert = gr.Radio(["Inpaint masked", "Inpaint not masked"], value="Inpaint masked",
                                           type="index", label="Mask mode", elem_id="img2img_mask_mode")
                inpainting_fill = gr.Radio(list(INPAINTING_FILL), value="original", type="index",
                                           label="Masked content", elem_id="img2img_inpainting_fill")
                with gr.Row():
                    full_res = gr.Radio(["Whole picture", "Only masked"], value="Whole picture", type="index",
                                        label="Inpaint area", elem_id="img2img_inpaint_full_res")
                    padding = gr.Slider(0, 256, value=32, step=4, label="Only masked padding, pixels",
                                        elem_id="img2img_inpaint_full_res_padding")
            sampler = ui.sampler_row(tab)
            size = ui.size_row(tab)
            denoising = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label="Denoising strength",
                                  elem_id="img2img_denoising_strength")
            seed = widgets.seed_row(tab)
            slg = widgets.skip_layer_row(tab, visible=ui.defaults.flow)
            scripts = ui.scripts_block(tab, is_img2img=True)
        with gr.Column(scale=1, elem_id=f"{tab}_results"):
            result = widgets.result_panel(tab)

    fields = {
        **tab_common.common_fields(prompt, sampler, size, seed), "denoising_strength": denoising,
        "resize_mode": resize_mode, "mask_blur": mask_blur, "inpainting_mask_invert": mask_invert,
        "inpainting_fill": inpainting_fill, "inpaint_full_res": full_res, "inpaint_full_res_padding": padding,
        **slg.fields(),
    }
    sources = {"mode": mode, "init_img": init_img, "sketch": sketch, "inpaint": inpaint,
               "upload_img": upload_img, "upload_mask": upload_mask, "batch_in": batch_in,
               "batch_out": batch_out, "batch_mask": batch_mask}
    script_inputs = tab_common.script_kwargs(scripts.inputs)

    def generate(**values):
        t0 = time.time()
        request = {name: values[name] for name in fields}
        src = {name: values[name] for name in sources}
        script_values = [values[name] for name in script_inputs]
        request["inpaint_full_res"] = bool(request["inpaint_full_res"])
        if src["mode"] == "batch":
            yield from image_inputs.run_batch(ctx, ui, request, src, script_values, result, t0)
            return
        request["init_images"], request["image_mask"] = image_inputs.init_and_mask(src)
        yield from tab_common.generate(ctx, ui, "img2img", request, script_values, result, t0)

    outputs = [result.gallery, result.infotext, result.info, result.progress, result.preview, result.seeds]
    inputs = {**fields, **sources, **script_inputs}
    event = prompt.generate.click(tab_common.named_generator(generate, inputs), inputs_kwargs=inputs, outputs=outputs, api_name="img2img",
                                  concurrency_id="generation", concurrency_limit=None)
    tab_common.wire_common(ctx, ui, tab, prompt, seed, result)
    gen_tab = tab_common.GenerationTab(tab, fields, result, prompt, event,
                                       tab_common.family_widgets(sampler, size, slg))
    tab_common.wire_paste(ui, gen_tab)
    gen_tab.inputs = {"init_img": init_img, "sketch": sketch, "inpaint": inpaint, "mode_tabs": (t0, t2)}
    return gen_tab
