"""PNG Info: drop any image, see its generation parameters (ours or A1111's), send them to a tab."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from modules.context import AppContext
from modules.images import read_info_from_image
from webui.ui.components import UploadImage


@dataclass
class PngInfoTab:
    image: gr.Image
    infotext: gr.Textbox
    send_to_txt2img: gr.Button
    send_to_img2img: gr.Button


def read_parameters(image) -> tuple[str, str]:
    """(infotext, html table of every text item) for an uploaded PIL image."""
    if image is None:
        return "", ""
    infotext, items = read_info_from_image(image)
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in (items or {}).items() if k != "parameters")
    if not infotext and not rows:
        return "", "<p>No generation parameters found in this image.</p>"
    return infotext or "", f"<table>{rows}</table>" if rows else ""


def create_tab(ctx: AppContext, ui) -> PngInfoTab:
    with gr.Row():
        with gr.Column():
            image = UploadImage(label="Source", type="pil", sources=["upload", "clipboard"], elem_id="pnginfo_image",
                             format="png")
        with gr.Column():
            infotext = gr.Textbox(label="Parameters", lines=6, interactive=False, elem_id="pnginfo_generation_info")
            other = gr.HTML(elem_id="pnginfo_html_info")
            with gr.Row():
                to_txt2img = gr.Button("Send to txt2img", elem_id="pnginfo_send_txt2img")
                to_img2img = gr.Button("Send to img2img", elem_id="pnginfo_send_img2img")
    image.change(read_parameters, inputs=image, outputs=[infotext, other], api_name="pnginfo")
    return PngInfoTab(image, infotext, to_txt2img, to_img2img)
