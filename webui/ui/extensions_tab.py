"""Extensions tab: installed extensions with enable checkboxes, errors, install from URL."""
from __future__ import annotations

import gradio as gr

from modules.context import AppContext


def create_tab(ctx: AppContext) -> None:
    gr.Markdown("Extensions are not available yet: the plugin system has not landed.")
