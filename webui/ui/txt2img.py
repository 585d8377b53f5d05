"""txt2img tab: prompt row, sampler, size, batch, CFG, seed, hires fix, scripts, gallery."""
from __future__ import annotations

import time

import gradio as gr

from modules.context import AppContext
from webui.ui import tab_common, widgets


def create_tab(ctx: AppContext, ui) -> tab_common.GenerationTab:
    tab = "txt2img"
    prompt = widgets.prompt_row(tab, ui.style_names())
    ui.extra_networks(tab)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, elem_id=f"{tab}_settings"):
            sampler = ui.sampler_row(tab)
            size = ui.size_row(tab)
            seed = widgets.seed_row(tab)
            slg = widgets.skip_layer_row(tab, visible=ui.defaults.flow)
            with gr.Accordion("Hires. fix", open=False, elem_id=f"{tab}_hr"):
                enable_hr = gr.Checkbox(label="Enable", value=False, elem_id=f"{tab}_enable_hr")
                with gr.Row():
                    hr_upscaler = gr.Dropdown(label="Upscaler", choices=ui.hr_upscalers, value=ui.hr_upscalers[0],
                                              elem_id=f"{tab}_hr_upscaler")
                    hr_steps = gr.Slider(0, 150, value=0, step=1, label="Hires steps", elem_id=f"{tab}_hires_steps")
                    denoising = gr.Slider(0.0, 1.0, value=0.7, step=0.01, label="Denoising strength",
                                          elem_id=f"{tab}_denoising_strength")
                with gr.Row():
                    hr_scale = gr.Slider(1.0, 4.0, value=2.0, step=0.05, label="Upscale by", elem_id=f"{tab}_hr_scale")
                    hr_resize_x = gr.Slider(0, 2048, value=0, step=8, label="Resize width to",
                                            elem_id=f"{tab}_hr_resize_x")
                    hr_resize_y = gr.Slider(0, 2048, value=0, step=8, label="Resize height to",
                                            elem_id=f"{tab}_hr_resize_y")
                with gr.Row():
                    hr_sampler = gr.Dropdown(label="Hires sampling method",
                                             choices=["Use same sampler", *ui.defaults.samplers],
                                             value="Use same sampler", elem_id=f"{tab}_hr_sampler")
                    hr_prompt = gr.Textbox(label="Hires prompt (empty: same)", lines=1, elem_id=f"{tab}_hr_prompt")
                    hr_negative = gr.Textbox(label="Hires negative prompt (empty: same)", lines=1,
                                             elem_id=f"{tab}_hr_neg_prompt")
            scripts = ui.scripts_block(tab, is_img2img=False)
        with gr.Column(scale=1, elem_id=f"{tab}_results"):
            result = widgets.result_panel(tab)

    fields = {
        **tab_common.common_fields(prompt, sampler, size, seed),
        "enable_hr": enable_hr, "hr_upscaler": hr_upscaler,
        "hr_second_pass_steps": hr_steps, "denoising_strength": denoising, "hr_scale": hr_scale,
        "hr_resize_x": hr_resize_x, "hr_resize_y": hr_resize_y, "hr_sampler_name": hr_sampler,
        "hr_prompt": hr_prompt, "hr_negative_prompt": hr_negative, **slg.fields(),
    }
    script_inputs = tab_common.script_kwargs(scripts.inputs)

    def generate(**values):
        t0 = time.time()
        request = {name: values[name] for name in fields}
        script_values = [values[name] for name in script_inputs]
        yield from tab_common.generate(ctx, ui, "txt2img", request, script_values, result, t0)

    outputs = [result.gallery, result.infotext, result.info, result.progress, result.preview, result.seeds]
    # named inputs: API clients (gradio_client) call /txt2img with prompt=..., steps=...
    inputs = {**fields, **script_inputs}
    event = prompt.generate.click(tab_common.named_generator(generate, inputs), inputs_kwargs=inputs, outputs=outputs, api_name="txt2img",
                                  concurrency_id="generation", concurrency_limit=None)
    prompt.prompt.submit(tab_common.named_generator(generate, inputs), inputs_kwargs=inputs, outputs=outputs, api_visibility="private",
                         concurrency_id="generation", concurrency_limit=None)
    tab_common.wire_common(ctx, ui, tab, prompt, seed, result)
    gen_tab = tab_common.GenerationTab(tab, fields, result, prompt, event,
                                       tab_common.family_widgets(sampler, size, slg, hr_sampler))
    tab_common.wire_paste(ui, gen_tab)
    return gen_tab
