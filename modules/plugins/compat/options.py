"""A1111's settings API for extensions: `shared.OptionInfo`, `shared.options_section`, `shared.opts`.

`opts` reads and writes the running application's modules.options.Options (the one of the current
extension scope): `opts.key`, `opts.key = value` (validated), `opts.data` (a live view: reads give
defaults too, writes are validated), `opts.add_option(key, OptionInfo(...))`, `opts.onchange(key, fn)`,
`opts.data_labels`, `opts.set`, `opts.get_default`, `opts.save`. A setting's Gradio component and its
arguments become the engine's kind, choices and range (the Settings tab builds its own control).
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Callable, Iterator

from modules.options import OptionError
from modules.options import OptionInfo as EngineOptionInfo
from modules.script_callbacks import current_scope


def _component_kind(component, args: dict, default) -> tuple[str, tuple | None]:
    """(engine kind, choices) for an A1111 setting's component (a Gradio class, by name: this
    module must not import gradio)."""
    name = getattr(component, "__name__", "") if component is not None else ""
    choices = args.get("choices")
    if choices is not None:
        choices = tuple(c[1] if isinstance(c, (list, tuple)) and len(c) == 2 else c for c in choices)
    if name in ("CheckboxGroup", "DropdownMulti") or (name == "Dropdown" and args.get("multiselect")):
        return "list", choices or None
    if choices:
        return "choice", choices
    if name == "Number" and args.get("precision", None) == 0:
        return "int", None
    return "auto", None


class OptionInfo:
    """A1111's OptionInfo(default, label, component, component_args, onchange, section, ...)."""

    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None,
                 section=None, refresh=None, comment_before="", comment_after="", infotext=None,
                 restrict_api=False, category_id=None):
        self.default, self.label, self.component = default, label, component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.refresh = refresh
        self.infotext = infotext
        self.category_id = category_id
        self.comment = comment_after or comment_before
        self.do_not_save = False
        self.restart = False

    def info(self, text: str) -> "OptionInfo":
        self.comment = text
        return self

    def needs_reload_ui(self) -> "OptionInfo":
        self.restart = True
        return self

    def needs_restart(self) -> "OptionInfo":
        self.restart = True
        return self

    def html(self, text: str) -> "OptionInfo":
        return self

    def link(self, label: str, url: str) -> "OptionInfo":
        return self

    def js(self, label: str, js_func: str) -> "OptionInfo":
        return self

    def to_engine(self, fallback_section: str) -> tuple[EngineOptionInfo, str | None]:
        """-> (modules.options.OptionInfo, the section's title or None)."""
        args = self.component_args() if callable(self.component_args) else dict(self.component_args or {})
        section, title = fallback_section, None
        if isinstance(self.section, (tuple, list)) and self.section and self.section[0]:
            section = str(self.section[0])
            title = str(self.section[1]) if len(self.section) > 1 and self.section[1] else None
        kind, choices = _component_kind(self.component, args, self.default)
        default = list(self.default) if kind == "list" and isinstance(self.default, (list, tuple)) else self.default
        if kind == "choice" and default not in choices:
            kind, choices = "auto", None  # e.g. a dropdown whose default is not among its choices
        info = EngineOptionInfo(default, str(self.label), section, kind=kind, choices=choices,
                                minimum=args.get("minimum"), maximum=args.get("maximum"), step=args.get("step"),
                                restart=self.restart, comment=str(self.comment or ""))
        return info, title


class OptionHTML(OptionInfo):
    """A1111's settings-page text; shown as nothing here (no value to keep)."""

    def __init__(self, text: str):
        super().__init__(str(text).strip(), label="", component=None)
        self.do_not_save = True


def options_section(section_identifier, options_dict: dict) -> dict:
    """A1111: give every OptionInfo of the dict the section (id, title)."""
    for value in options_dict.values():
        if isinstance(value, OptionInfo):
            value.section = section_identifier
    return options_dict


class _DataView(MutableMapping):
    """opts.data: reads give every setting (defaults included), writes are validated and kept."""

    def __init__(self, opts):
        self._opts = opts

    def __getitem__(self, key: str) -> Any:
        try:
            return self._opts.get(key)
        except OptionError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._opts.registry:
            self._opts.set(key, value)
        else:  # an unknown key (an extension's own bookkeeping): kept like config.json's unknown keys
            self._opts.data[key] = value

    def __delitem__(self, key: str) -> None:
        self._opts.data.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._opts.as_dict())

    def __len__(self) -> int:
        return len(self._opts.as_dict())


# A1111 v1.10 settings this web UI does not have, with A1111's defaults: extensions read them (reading
# gives the default; they have no effect here)
A1111_SETTING_DEFAULTS = {
    "img2img_background_color": "#ffffff", "interrogate_keep_models_in_memory": False,
    "interrogate_clip_max_length": 48, "interrogate_clip_min_length": 24, "interrogate_return_ranks": False,
    "interrogate_deepbooru_score_threshold": 0.5, "deepbooru_use_spaces": True, "deepbooru_escape": True,
    "deepbooru_sort_alpha": True, "dataset_filename_word_regex": "", "dataset_filename_join_string": " ",
    "extra_networks_hidden_models": "When searched", "lora_functional": False, "sd_checkpoint_cache": 0,
    "samples_log_stdout": False, "do_not_show_images": False, "grid_extended_filename": False,
    "img2img_fix_steps": False, "font": "", "outdir_save": "log/images", "outdir_init_images": "outputs/init-images",
    "open_dir_button_choice": "Subdirectory", "gallery_height": "", "sd_vae_as_default": True,
    "multiple_tqdm": True, "show_progressbar": True, "upcast_sampling": False, "enable_emphasis": True,
    "use_old_emphasis_implementation": False, "sd_hypernetwork": "None", "img2img_color_correction": False,
    "save_txt": False, "save_images_before_face_restoration": False, "face_restoration": False,
}


class Opts:
    """shared.opts: the current application's Options, by A1111's names."""

    def _opts(self):
        return current_scope().ctx.opts

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return getattr(self._opts(), key)
        except AttributeError:
            if key in A1111_SETTING_DEFAULTS:
                return A1111_SETTING_DEFAULTS[key]
            raise

    def __setattr__(self, key: str, value: Any) -> None:
        self._opts().set(key, value)

    def __contains__(self, key: str) -> bool:
        opts = self._opts()
        return key in opts.registry or key in opts.data

    @property
    def data(self) -> MutableMapping:
        return _DataView(self._opts())

    @property
    def data_labels(self) -> dict:
        return dict(self._opts().registry)

    def add_option(self, key: str, info) -> None:
        scope = current_scope()
        title = None
        onchange = None
        if isinstance(info, OptionHTML):
            return
        if isinstance(info, OptionInfo):
            onchange = info.onchange
            info, title = info.to_engine(f"extension_{scope.extension}")
            title = title or scope.extension
        scope.ctx.opts.add_option(key, info, title)
        if onchange is not None:
            self.onchange(key, onchange, call=False)

    def onchange(self, key: str, func: Callable, call: bool = True) -> None:
        """func() after the setting changes (A1111); call=True also calls it now."""
        scope = current_scope()
        registry = scope.registry

        def listener(_key, _value, func=func):
            registry.guarded(scope, f"opts.onchange({key})", func)
        scope.ctx.opts.on_change(key, listener)
        if call:
            registry.guarded(scope, f"opts.onchange({key})", func)

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        opts = self._opts()
        try:
            before = opts.get(key)
        except OptionError:
            return False
        opts.set(key, value)
        return before != opts.get(key)

    def get_default(self, key: str) -> Any:
        info = self._opts().registry.get(key)
        return info.default if info is not None else None

    def get(self, key: str, default=None) -> Any:
        try:
            return self._opts().get(key)
        except OptionError:
            return default

    def save(self, filename: str | None = None) -> None:
        self._opts().save()

    def dumpjson(self) -> str:
        import json
        return json.dumps(self._opts().as_dict(), default=str)
