"""The Gradio Blocks: the quick-settings bar and one tab per module in webui/ui/."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from modules.context import AppContext
from webui.ui import (
    component_hooks,
    extension_ui,
    img2img,
    png_info,
    settings,
    top_bar,
    txt2img,
    workers_panel,
)
from webui.ui.ui_state import UiState


def create_ui(ctx: AppContext) -> gr.Blocks:
    """The page. Extensions' on_before_ui runs first; every block gets the component callbacks
    (webui/ui/component_hooks.py)."""
    scripts = ctx.services.scripts
    if scripts is None:
        return _create_ui(ctx, None)
    scripts.before_ui()
    hooks = component_hooks.ComponentHooks(scripts)
    with hooks.active():
        return _create_ui(ctx, hooks)


def _create_ui(ctx: AppContext, hooks) -> gr.Blocks:
    ui = UiState.from_context(ctx)
    tabs: dict = {}
    with gr.Blocks(title="Stable Diffusion") as demo:
        if hooks is not None:
            hooks.watch(demo)
        ui.status, ui.checkpoint = top_bar.create(ctx, ui)
        workers_panel.create(ctx)  # with --workers / --ray-address only
        with gr.Tabs(elem_id="tabs") as tab_set:
            # render_children: A1111's page had every tab in it (hidden), and extensions' javascript
            # looks for #img2img_prompt and the like when the page loads
            with gr.Tab("txt2img", id="txt2img", elem_id="tab_txt2img", render_children=True), ui.building("txt2img"):
                tabs["txt2img"] = txt2img.create_tab(ctx, ui)
            with gr.Tab("img2img", id="img2img", elem_id="tab_img2img", render_children=True), ui.building("img2img"):
                tabs["img2img"] = img2img.create_tab(ctx, ui)
            for title, elem_id, builder in ui.optional_tabs():
                with gr.Tab(title, id=elem_id, elem_id=elem_id):
                    tabs[elem_id] = builder(ctx, ui)
            with gr.Tab("PNG Info", id="pnginfo", elem_id="tab_pnginfo"):
                tabs["pnginfo"] = png_info.create_tab(ctx, ui)
            for title, elem_id, builder in ui.tool_tabs():
                with gr.Tab(title, id=elem_id, elem_id=elem_id):
                    tabs[elem_id] = builder(ctx, ui)
            for blocks_title, elem_id, render in ui.extension_tabs():
                with gr.Tab(blocks_title, id=elem_id, elem_id=f"tab_{elem_id}", render_children=True):
                    render()
            with gr.Tab("Settings", id="settings", elem_id="tab_settings"):
                settings.create_tab(ctx, choices_for=ui.dynamic_choices)
            with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
                ui.extensions_tab(ctx)
        ui.wire_send_to(tabs, tab_set)
        extension_ui.wire_paste_bindings(ctx, ui, tabs, tab_set)
        # the model loads in the background at start: each page load shows what is loaded now
        demo.load(lambda: top_bar.model_status(ctx), outputs=ui.status, api_visibility="private", queue=False)
        if hooks is not None:
            hooks.flush()  # the last blocks' on_after_component, while the page can still take blocks
    return demo


def mount_kwargs(ctx: AppContext) -> dict:
    tmp = Path(tempfile.gettempdir()) / "sdwebui"
    tmp.mkdir(exist_ok=True)
    return {"allowed_paths": [str(ctx.paths.outputs_dir), str(tmp)], "css": UiState.css(ctx),
            "head": UiState.head(ctx)}
