"""Gradio 3.41 extension UI code on Gradio 6 (webui/ui/gradio3_compat.py): each rule, its scope (only
extension code sees the stand-in module; the real one is back afterwards), the note per extension,
Gradio 3 code that cannot be translated, and the page built with such extensions (component
callbacks for every block, their placement, skipped controls, settings sections)."""
from __future__ import annotations

import sys
from pathlib import Path

import gradio
import pytest

from modules.script_callbacks import CallbackRegistry
from webui.ui import gradio3_compat


@pytest.fixture()
def scope():
    return CallbackRegistry(None).scope("oldext", Path("/nonexistent"))


def _config(demo, elem_id):
    return next(c for c in demo.get_config_file()["components"] if c["props"].get("elem_id") == elem_id)


def test_gradio3_code_builds_and_the_real_module_comes_back(scope):
    with gradio3_compat.environment(scope):
        import gradio as gr
        assert gr is not gradio and sys.modules["gradio"] is gr

        class MyButton(gr.Button):  # A1111 habit: *args/**kwargs, positional value
            def __init__(self, *args, **kwargs):
                super().__init__(*args, variant="tool", **kwargs)

        with gr.Blocks() as demo:
            with gr.Box(elem_id="box"):
                word = gr.Textbox(label="w", elem_id="word").style(container=False)
                go = gr.Button("Go", elem_id="go").style(full_width=False)
                MyButton("Mine", elem_id="mine")
                choice = gr.Dropdown(["a", "b"], elem_id="choice")
                hidden = gr.Textbox(visible=False, elem_id="hidden")
                gallery = gr.Gallery(elem_id="gallery").style(grid=3)
            go.click(fn=None, _js="(w) => w.toUpperCase()", inputs=word, outputs=word, show_progress=False)
    assert sys.modules["gradio"] is gradio  # outside extension code: Gradio 6 itself
    assert _config(demo, "box")["type"] == "group"
    assert _config(demo, "word")["props"]["container"] is False and word.value == ""  # Gradio 3's default
    assert _config(demo, "go")["props"]["scale"] == 0
    mine_config = _config(demo, "mine")
    assert mine_config["type"] == "button" and mine_config["props"]["value"] == "Mine"
    assert "tool" in mine_config["props"]["elem_classes"]
    assert choice.value is None  # Gradio 3 left it empty; Gradio 6 would pick "a"
    assert hidden.visible == "hidden"  # kept in the page for the extension's javascript
    assert gallery.columns == 3 and gallery.format == "png"
    dependency = demo.get_config_file()["dependencies"][0]
    assert dependency["js"] == "(w) => w.toUpperCase()" and dependency["show_progress"] == "hidden"
    # a Gradio 6 component is an instance of the stand-in classes (on_after_component checks)
    assert isinstance(gradio.Slider(render=False), gr.Slider) and isinstance(word, gradio.Textbox)
    assert gr.Button.update(visible=False) == {"__type__": "update", "visible": "hidden"}
    notes = scope.registry.notes["oldext"]
    assert len(notes) == len(set(notes))  # each translation once per extension
    for text in ("gr.Box -> gr.Group", "`_js=` -> `js=`", "style(...)", "show_progress", "visible=False",
                 "gr.Button.update(...)"):
        assert any(text in n for n in notes), (text, notes)


def test_file_values_have_a_name_like_gradio3_temp_files(scope):
    with gradio3_compat.environment(scope):
        import gradio as gr
        upload = gr.File(render=False)
    assert upload.type == "filepath"
    value = gradio3_compat._named("/tmp/x.txt")
    assert value == "/tmp/x.txt" and value.name == "/tmp/x.txt"


def test_code_without_a_gradio6_equivalent_is_refused(scope):
    with gradio3_compat.environment(scope), pytest.raises(gradio3_compat.Untranslatable, match="sketch canvas"):
        import gradio as gr
        gr.Image(tool="sketch", type="pil", render=False)
    assert sys.modules["gradio"] is gradio


def _layout(block):
    """The page's blocks in layout order (Gradio's Form wrappers, added when the page is built, are
    walked through)."""
    for child in getattr(block, "children", []):
        if not isinstance(child, gradio.components.Form):
            yield child
        yield from _layout(child)


@pytest.mark.slow
def test_page_with_gradio3_extensions(tmp_path):
    """The whole page in-process: component callbacks for every block, placed as A1111 places them;
    the untranslatable extension's controls skipped with its message; the settings section."""
    from modules.plugins.manager import load_extensions
    from tests.api_support import make_context, make_data_dir
    from tests.extensions_support import A1111_SURFACE, GRADIO3_SKETCH, GRADIO3_STYLE, write_extension
    from webui.ui import app

    root = make_data_dir(tmp_path)
    for name, files in (("surface", A1111_SURFACE), ("g3", GRADIO3_STYLE), ("sketchy", GRADIO3_SKETCH)):
        write_extension(root, name, files)
    ctx = make_context(root)
    load_extensions(ctx, run_installers=False, ui_environment=gradio3_compat.environment)
    demo = app.create_ui(ctx)
    assert sys.modules["gradio"] is gradio
    seen = next(m for n, m in sys.modules.items() if n.startswith("sdwebui_extension_surface")).seen
    components = seen["components"]
    assert components["txt2img_prompt"] == "Textbox" and components["txt2img_generate"] == "Button"
    assert components["tab_txt2img"] == "Tab" and components["g3_txt2img_word"] == "Textbox"  # ours, layouts, theirs
    assert components["g3_choice"] == "Dropdown"  # inside an on_ui_tabs tab
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    order = [getattr(b, "elem_id", None) for b in _layout(demo)]  # the page, top to bottom
    assert order.index("surface_after_prompt") == order.index("txt2img_prompt") + 1
    assert order.index("surface_before_neg") == order.index("txt2img_neg_prompt") - 1
    problems = [p.message for p in ctx.extensions.problems_of("sketchy")]
    assert any("Untranslatable" in m and "no Gradio 6 equivalent" in m for m in problems), problems
    group = blocks["sketchy_note"]
    while "script-controls" not in (group.elem_classes or []):
        group = group.parent
    assert group.visible is False  # what ui() built before it failed is not shown
    settings = [b for b in demo.blocks.values() if isinstance(b, gradio.Tab) and b.label == "Surface test"]
    assert len(settings) == 1
