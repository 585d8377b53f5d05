"""Extras tab: upscale one image (SD x4 upscaler, Lanczos, Nearest)."""
from __future__ import annotations

import gradio as gr

from modules.context import AppContext


def create_tab(ctx: AppContext, ui):
    gr.Markdown("Extras (upscalers) are not available yet: the upscaler pipeline has not landed.")
    return None
