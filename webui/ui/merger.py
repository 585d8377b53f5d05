"""Checkpoint Merger tab (A1111's elem ids): renders modules.merger / modules.models.merge."""
from __future__ import annotations

import html

import gradio as gr

from modules import merger
from modules.context import AppContext
from modules.models import merge
from webui.ui import top_bar

DESCRIPTIONS = {"No interpolation": "Result = A", "Weighted sum": "Result = A * (1 - M) + B * M",
                "Add difference": "Result = A + (B - C) * M"}


def create_tab(ctx: AppContext, ui):
    titles = ui.checkpoint_titles()
    with gr.Row(equal_height=False):
        with gr.Column(variant="compact"):
            gr.HTML("A merger of the checkpoints of the same family; the result is written to "
                    f"<code>{html.escape(str(ctx.paths.ckpt_dirs[0]))}</code> and listed at once.")
            with gr.Row():
                # empty until chosen, as A1111's (Gradio would preselect the first file in all three)
                primary = gr.Dropdown(titles, value=None, label="Primary model (A)",
                                      elem_id="modelmerger_primary_model_name")
                secondary = gr.Dropdown(titles, value=None, label="Secondary model (B)",
                                        elem_id="modelmerger_secondary_model_name")
                tertiary = gr.Dropdown(titles, value=None, label="Tertiary model (C)",
                                       elem_id="modelmerger_tertiary_model_name")
                refresh = gr.Button("\U0001f504", size="sm", min_width=40, scale=0, elem_id="modelmerger_refresh")
            custom_name = gr.Textbox(label="Custom Name (Optional)", elem_id="modelmerger_custom_name")
            multiplier = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="Multiplier (M) - set to 0 to get model A",
                                   elem_id="modelmerger_interp_amount")
            method = gr.Radio(list(merge.METHODS), value="Weighted sum", label="Interpolation Method",
                              elem_id="modelmerger_interp_method")
            description = gr.HTML(DESCRIPTIONS["Weighted sum"], elem_id="modelmerger_interp_description")
            with gr.Row():
                checkpoint_format = gr.Radio(list(merge.FORMATS), value="safetensors", label="Checkpoint format",
                                             elem_id="modelmerger_checkpoint_format")
                save_as_half = gr.Checkbox(False, label="Save as float16", elem_id="modelmerger_save_as_half")
            with gr.Accordion("Additional settings", open=False):
                config_source = gr.Radio(list(merge.CONFIG_SOURCES), value=merge.CONFIG_SOURCES[0], type="index",
                                         label="Copy config from", elem_id="modelmerger_config_method")
                bake_in_vae = gr.Dropdown(["None", *ui.vae_names()[2:]], value="None", label="Bake in VAE",
                                          elem_id="modelmerger_bake_in_vae")
                discard_weights = gr.Textbox(label="Discard weights with matching name (regular expression)",
                                             elem_id="modelmerger_discard_weights")
                save_metadata = gr.Checkbox(True, label="Save metadata", elem_id="modelmerger_save_metadata")
            run = gr.Button("Merge", variant="primary", elem_id="modelmerger_merge")
        with gr.Column(variant="compact"):
            result = gr.HTML(elem_id="modelmerger_result")

    method.change(lambda m: DESCRIPTIONS.get(m, ""), inputs=method, outputs=description,
                  api_visibility="private", queue=False)

    top = [ui.checkpoint] if getattr(ui, "checkpoint", None) is not None else []

    def extra_updates() -> tuple:  # the top bar's dropdown lists the new file too (as A1111's)
        return (top_bar.checkpoint_update(ctx, ui),) if top else ()

    def do_merge(primary, secondary, tertiary, method, multiplier, save_as_half, custom_name, checkpoint_format,
                 config_source, bake_in_vae, discard_weights, save_metadata):
        try:
            path = merger.merge_titles(
                ctx, primary=primary, secondary=secondary, tertiary=tertiary, method=method,
                multiplier=multiplier, save_as_half=save_as_half, custom_name=custom_name,
                checkpoint_format=checkpoint_format, config_source=config_source, bake_in_vae=bake_in_vae,
                discard_weights=discard_weights, save_metadata=save_metadata)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        titles = ui.checkpoint_titles()
        update = gr.update(choices=titles)
        saved = f"Checkpoint saved to {html.escape(str(path))}"
        return (saved, update, update, update) + extra_updates()

    def do_refresh():
        ctx.models.refresh()
        update = gr.update(choices=ui.checkpoint_titles())
        return update, update, update

    refresh.click(do_refresh, outputs=[primary, secondary, tertiary], api_visibility="private")
    run.click(do_merge, inputs=[primary, secondary, tertiary, method, multiplier, save_as_half, custom_name,
                                checkpoint_format, config_source, bake_in_vae, discard_weights, save_metadata],
              outputs=[result, primary, secondary, tertiary, *top], api_name="modelmerger",
              concurrency_id="generation", concurrency_limit=None)
    return None
