"""depth2img tab (SD 2 depth model): image, optional depth map, the depth map used."""
from __future__ import annotations

import gradio as gr

from modules.context import AppContext


def create_tab(ctx: AppContext, ui):
    gr.Markdown("depth2img is not available yet: the depth pipeline has not landed.")
    return None
