"""The scripts area of txt2img/img2img: the "Script" dropdown (elem_id `script_list`, as in A1111)
that shows the chosen script's controls, and the AlwaysVisible scripts' controls."""
from __future__ import annotations

import contextlib

import gradio as gr


def _components(runner, script, built: list) -> list:
    """Keep what Gradio can take as an input; anything else is reported against the extension."""
    good = [c for c in built if isinstance(c, gr.components.Component)]
    if len(good) != len(built):
        bad = ", ".join(type(c).__name__ for c in built if not isinstance(c, gr.components.Component))
        runner.registry.report(script.extension, f"{script.title()} ui()",
                               f"returned values that are not Gradio components ({bad}); they were left out")
    return good


def create_ui(runner, tab: str) -> list:
    """Build inside the current Blocks; returns the inputs: the dropdown, then every control in the
    runner's argument order (its args_from/args_to are set here)."""
    built: dict[int, list] = {}
    groups = []
    with gr.Column(elem_id=f"{tab}_script_container"):
        dropdown = gr.Dropdown(label="Script", choices=["None", *runner.titles()], value="None", type="index",
                               elem_id="script_list", elem_classes=[f"{tab}_script_list"])
        for script in runner.selectable_scripts:
            with gr.Group(visible=False, elem_classes=["script-controls"]) as group:
                built[id(script)] = _components(runner, script, runner.build_ui(script))
            groups.append(group)
        for script in runner.alwayson_scripts:
            with gr.Group(elem_classes=["script-controls", "alwayson"]) as group:
                built[id(script)] = _components(runner, script, runner.build_ui(script))
            if runner.ui_failed(script):  # what ui() built before it failed is not shown (the
                group.visible = False     # Extensions tab says why)
    runner.set_layout(built)
    if groups:
        def show(index):
            return [gr.update(visible=(i + 1 == index)) for i in range(len(groups))]
        dropdown.change(show, inputs=dropdown, outputs=groups, api_visibility="private", queue=False,
                        show_progress="hidden")
    return [dropdown] + [c for script in runner.scripts for c in built[id(script)]]


@contextlib.contextmanager
def sandbox():
    """Somewhere off-page to build script controls (the API's default arguments)."""
    with gr.Blocks(analytics_enabled=False):
        yield


def attach(ctx) -> None:
    """Give the scripts service the sandbox (the server calls this; UiState does it too)."""
    scripts = ctx.services.scripts
    if scripts is not None:
        scripts.set_ui_sandbox(sandbox)
