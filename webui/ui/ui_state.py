"""What the tabs need from the engine, gathered once per UI build: choice lists, styles, token
counting, scripts, the optional tabs, and "send to" wiring between tabs."""
from __future__ import annotations

import contextlib
import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gradio as gr

from modules import startup
from modules.context import AppContext
from modules.processing import hires
from modules.sampling.samplers import SAMPLERS
from modules.sampling.schedules import SCHEDULERS
from webui.ui import depth2img, extensions_tab, extras, scripts_ui, send_to


@dataclass
class ScriptsBlock:
    inputs: list = field(default_factory=list)   # the dropdown first, then every script's controls


@dataclass
class UiState:
    ctx: AppContext
    sampler_names: list[str]
    scheduler_labels: list[str]
    hr_upscalers: list[str]
    tmp_dir: Path
    ext_tabs: list = field(default_factory=list)  # on_ui_tabs: built before the page's Blocks
    native_size: int = 512  # default width/height: what the default checkpoint was trained at
    status: object = None  # the top bar's model status (checkpoint cards switch the model and update it)
    checkpoint: object = None  # the top bar's checkpoint dropdown (the merger adds files, cards switch)

    @classmethod
    def from_context(cls, ctx: AppContext) -> "UiState":
        tmp = Path(tempfile.gettempdir()) / "sdwebui"
        tmp.mkdir(exist_ok=True)
        scripts = ctx.services.scripts
        ext_tabs = []
        if scripts is not None:
            scripts.set_ui_sandbox(scripts_ui.sandbox)
            # extensions' on_ui_tabs build their own gr.Blocks: that must happen outside the page's
            ext_tabs = scripts.ui_tabs()
        return cls(ctx, [s.name for s in SAMPLERS], [s.label for s in SCHEDULERS],
                   hires.upscaler_names(ctx.services.upscalers), tmp, ext_tabs, startup.native_size(ctx))

    # -- lists -----------------------------------------------------------------------------------
    def checkpoint_titles(self) -> list[str]:
        return self.ctx.models.catalog.titles() if self.ctx.models else []

    def vae_names(self) -> list[str]:
        vaes = getattr(self.ctx.models, "vae_catalog", None)
        return ["Automatic", "None"] + (vaes.names() if vaes else [])

    def dynamic_choices(self, key: str) -> list[str] | None:
        if key == "sd_model_checkpoint":
            return self.checkpoint_titles()
        if key == "sd_vae":
            return self.vae_names()
        return None

    # -- prompts ---------------------------------------------------------------------------------
    def styles(self):
        return self.ctx.services.styles

    def style_names(self) -> list[str]:
        styles = self.styles()
        return list(styles.styles) if styles is not None else []

    def apply_styles(self, prompt: str, negative: str, names: list[str]):
        styles = self.styles()
        if styles is None or not names:
            return prompt, negative, names
        return (styles.apply_styles_to_prompt(prompt, names),
                styles.apply_negative_styles_to_prompt(negative, names), [])

    def save_style(self, name: str, prompt: str, negative: str):
        """Save the current prompts as a style (styles.csv, written atomically); refreshes the list."""
        styles = self.styles()
        if styles is None:
            raise gr.Error("Styles are not available")
        try:
            styles.set(name or "", prompt or "", negative or "")
            styles.save()
        except ValueError as e:
            raise gr.Error(str(e)) from None
        except OSError as e:
            raise gr.Error(f"{styles.path} could not be written: {e.strerror}") from None
        return gr.update(choices=self.style_names()), ""

    def token_counter_html(self, text: str) -> str:
        if self.ctx.models is None:
            return ""
        try:
            used, limit = startup.count_tokens(self.ctx, text or "")
        except Exception as e:  # a counter must never break typing
            return f"<span title='{html.escape(str(e))}'>?/75</span>"
        return f"<span class='token-counter{' over' if used > limit else ''}'>{used}/{limit}</span>"

    # -- scripts (extensions) --------------------------------------------------------------------
    def scripts_runner(self, is_img2img: bool):
        scripts = self.ctx.services.scripts
        return scripts.runner(is_img2img) if scripts is not None else None

    def extra_networks(self, tab: str) -> None:
        from webui.ui import extra_networks_ui
        extra_networks_ui.create(self.ctx, tab, self)

    @contextlib.contextmanager
    def building(self, tab: str):
        """While a generation tab is built, its scripts see its components (A1111's scripts_current:
        Script.before_component / after_component)."""
        scripts = self.ctx.services.scripts
        if scripts is None:
            yield
            return
        scripts.current_runner = scripts.runner(tab == "img2img")
        try:
            yield
        finally:
            scripts.current_runner = None

    def scripts_block(self, tab: str, is_img2img: bool) -> ScriptsBlock:
        runner = self.scripts_runner(is_img2img)
        if runner is None:
            return ScriptsBlock([])
        return ScriptsBlock(scripts_ui.create_ui(runner, tab))

    # -- tabs ------------------------------------------------------------------------------------
    def optional_tabs(self) -> list[tuple[str, str, Callable]]:
        return [("depth2img", "tab_depth2img", depth2img.create_tab), ("Extras", "tab_extras", extras.create_tab)]

    def tool_tabs(self) -> list[tuple[str, str, Callable]]:
        """After PNG Info, as in A1111."""
        from webui.ui import merger, train
        return [("Checkpoint Merger", "tab_modelmerger", merger.create_tab), ("Train", "tab_train", train.create_tab)]

    def extension_tabs(self) -> list[tuple[str, str, Callable]]:
        return list(self.ext_tabs)

    def extensions_tab(self, ctx: AppContext) -> None:
        extensions_tab.create_tab(ctx)

    def wire_send_to(self, tabs: dict, tab_set: gr.Tabs) -> None:
        send_to.wire(self, tabs, tab_set)

    @staticmethod
    def css(ctx: AppContext) -> str:
        from webui.ui import extra_networks_ui, widgets
        base = (".token-counter.over { color: #d33; } .comments { color: #b60; margin: 0; }" + widgets.CSS
                + extra_networks_ui.CSS)
        scripts = ctx.services.scripts
        return base + ("\n" + scripts.css() if scripts is not None else "")

    @staticmethod
    def head(ctx: AppContext) -> str:
        from webui.ui import extension_ui
        return extension_ui.head(ctx)  # A1111's javascript helpers, then the extensions' javascript/
