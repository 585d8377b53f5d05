"""The Gradio Blocks: the top bar and one tab per module in webui/ui/.

A tab whose engine part has not landed yet says so in one line: never a fake image.
"""
from __future__ import annotations

import gradio as gr

from modules.context import AppContext

TABS = [
    # (title, elem_id, what is missing until the engine part lands)
    ("txt2img", "tab_txt2img", "txt2img is not available yet: the generation engine has not landed."),
    ("img2img", "tab_img2img", "img2img and inpaint are not available yet: the generation engine has not landed."),
    ("depth2img", "tab_depth2img", "depth2img is not available yet: the depth model has not landed."),
    ("Extras", "tab_extras", "Extras (upscalers) are not available yet: the x4 upscaler has not landed."),
    ("PNG Info", "tab_pnginfo", "PNG Info is not available yet: the infotext reader has not landed."),
    ("Settings", "tab_settings", "Settings are not editable in the UI yet: edit config.json in the data dir."),
    ("Extensions", "tab_extensions", "Extensions are not available yet."),
]


def create_ui(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Stable Diffusion") as demo:
        with gr.Tabs(elem_id="tabs"):
            for title, elem_id, missing in TABS:
                with gr.Tab(title, elem_id=elem_id):
                    gr.Markdown(missing)
    return demo


def mount_kwargs(ctx: AppContext) -> dict:
    return {"allowed_paths": [str(ctx.paths.outputs_dir)]}
