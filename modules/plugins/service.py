"""`ctx.services.scripts`: what the front ends need from the loaded extensions.

- `runner(is_img2img)` / `scripts_txt2img` / `scripts_img2img`: the ScriptRunners (A1111's names);
- `ui_tabs()`: the on_ui_tabs callbacks' tabs as (title, elem_id, render) - call it outside any
  Gradio Blocks (the callbacks build their own Blocks), then call render() inside a gr.Tab;
- `css()` / `javascript()`: the extensions' style.css and javascript/*.js for the page;
- `before_ui()`, `component_created(component, kwargs, phase)`: on_before_ui and the component callbacks
  (webui/ui/component_hooks.py calls them while the page is built; `current_runner` is the tab's runner);
- `app_started(demo, app)`, `infotext_pasted(infotext, params)`, `unload()`: the remaining callbacks;
- `paste_bindings`, `extra_pages`: what infotext_utils / ui_extra_networks registered;
- `set_ui_sandbox(factory)`: the front end's "build components off-page" context (see plugins.runner).
"""
from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any, Callable

from modules.plugins.runner import ScriptRunner
from modules.script_callbacks import CallbackRegistry
from modules.scripts import ScriptClass

log = logging.getLogger("sdwebui.extensions")


class ScriptsService:
    def __init__(self, registry: CallbackRegistry, classes: list[ScriptClass], extensions: list):
        self.registry = registry
        self.extensions = list(extensions)  # the loaded (enabled) ones, in load order
        self.scripts_txt2img = ScriptRunner(classes, False, registry)
        self.scripts_img2img = ScriptRunner(classes, True, registry)
        self.current_runner: ScriptRunner | None = None  # the tab being built (A1111's scripts_current)
        self.paste_bindings: list = []  # infotext_utils.register_paste_params_button, wired by the UI
        self.paste_fields: dict = {}    # infotext_utils.add_paste_fields: extensions' own tabs
        self.extra_pages: list = []     # ui_extra_networks.register_page (no browser shows them yet)

    def runner(self, is_img2img: bool) -> ScriptRunner:
        return self.scripts_img2img if is_img2img else self.scripts_txt2img

    def set_ui_sandbox(self, factory: Callable[[], Any] | None) -> None:
        for r in (self.scripts_txt2img, self.scripts_img2img):
            r.ui_sandbox = factory

    # -- UI ----------------------------------------------------------------------------------------
    def before_ui(self) -> None:
        self.registry.call_ui("before_ui")

    def component_created(self, component, kwargs: dict, phase: str) -> None:
        """on_before_component / on_after_component (phase "before" / "after") for one component of
        the page, then the hooks of the scripts of the tab being built."""
        self.registry.call_ui(f"{phase}_component", component, **kwargs)
        if self.current_runner is not None:
            self.current_runner.component_hooks(component, kwargs, phase)

    def ui_tabs(self) -> list[tuple[str, str, Callable[[], Any]]]:
        """Run the on_ui_tabs callbacks; malformed results are reported, not raised."""
        tabs, seen = [], set()
        for cb, result in self.registry.call_ui("ui_tabs"):
            for item in result or []:
                if not (isinstance(item, (list, tuple)) and len(item) >= 2 and hasattr(item[0], "render")):
                    self.registry.report(cb.scope.extension, f"callback on_ui_tabs ({cb.name})",
                                         f"returned {item!r}; expected a list of (gr.Blocks, title, elem_id)")
                    continue
                blocks, title = item[0], str(item[1])
                elem_id = str(item[2]) if len(item) > 2 and item[2] else re.sub(r"\W+", "_", title.lower())
                while elem_id in seen:
                    elem_id += "_"
                seen.add(elem_id)
                tabs.append((title, elem_id, blocks.render))
        return tabs

    def _files(self, pattern: str) -> list[tuple[Any, Path]]:
        out = []
        for ext in self.extensions:
            out += [(ext, f) for f in sorted(ext.path.glob(pattern)) if f.is_file()]
        return out

    def css(self) -> str:
        parts = []
        for ext, path in self._files("style.css"):
            try:
                parts.append(f"/* {ext.name}/style.css */\n{path.read_text(encoding='utf-8')}")
            except (OSError, UnicodeDecodeError) as e:
                self.registry.report(ext.name, "style.css", e)
        return "\n".join(parts)

    def javascript(self) -> str:
        """<script> tags with each extension's javascript/*.js inline (the page head)."""
        parts = []
        for ext, path in self._files("javascript/*.js"):
            try:
                code = path.read_text(encoding="utf-8").replace("</script", "<\\/script")
            except (OSError, UnicodeDecodeError) as e:
                self.registry.report(ext.name, f"javascript/{path.name}", e)
                continue
            name = html.escape(f"{ext.name}/javascript/{path.name}", quote=True)
            parts.append(f'<script type="text/javascript" data-extension-file="{name}">\n{code}\n</script>')
        return "\n".join(parts)

    # -- callbacks the front ends trigger -----------------------------------------------------------
    def app_started(self, demo, app) -> None:
        self.registry.call("app_started", demo, app)

    def infotext_pasted(self, infotext: str, params: dict) -> dict:
        """Let extensions edit the parsed infotext parameters (in place, as in A1111)."""
        self.registry.call("infotext_pasted", infotext, params)
        return params

    def model_loaded(self, sd_model) -> None:
        self.registry.call("model_loaded", sd_model)

    def unload(self) -> None:
        self.registry.call("script_unloaded")
