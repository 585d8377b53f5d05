"""A1111's `modules.infotext_utils` path (and its old name `modules.generation_parameters_copypaste`),
for extensions: reading infotexts (parse_generation_parameters, create_override_settings_dict,
quote, unquote) and "send to" / paste buttons (ParamBinding, register_paste_params_button,
add_paste_fields, paste_fields, and - UI code, from webui/ui/extension_ui.py - create_buttons,
bind_buttons, image_from_url_text). Registered buttons are wired by the web UI once the page is
built, with the same paste rule as our own buttons. Nothing in the project imports this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modules import infotext
from modules.infotext import quote, unquote  # noqa: F401
from modules.script_callbacks import current_scope


@dataclass
class ParamBinding:
    paste_button: Any
    tabname: str
    source_text_component: Any = None
    source_image_component: Any = None
    source_tabname: str | None = None
    override_settings_component: Any = None
    paste_field_names: list | None = None


def _service():
    service = current_scope().ctx.services.scripts
    if service is None:
        raise RuntimeError("extensions are not loaded in this application")
    return service


def register_paste_params_button(binding: ParamBinding) -> None:
    """Clicking binding.paste_button fills tab `binding.tabname` from the source text (or the
    source image's infotext) and switches to that tab."""
    _service().paste_bindings.append(binding)


def add_paste_fields(tabname: str, init_img, fields, override_settings_comp=None) -> None:
    """An extension's own tab that paste buttons can target: fields = [(component, infotext key or
    fn(params) -> value)]."""
    _service().paste_fields[tabname] = {"init_img": init_img, "fields": list(fields or []),
                                        "override_settings_component": override_settings_comp}


def parse_generation_parameters(x: str, skip_fields: list | None = None) -> dict:
    params = infotext.parse_generation_parameters(x or "")
    for key in skip_fields or []:
        params.pop(key, None)
    return params


def create_override_settings_dict(text_pairs: list[str]) -> dict:
    """["Clip skip: 2", ...] -> {"CLIP_stop_at_last_layers": 2, ...} (the settings an infotext sets)."""
    return infotext.override_settings_from_texts(text_pairs)


def __getattr__(name: str):
    if name == "paste_fields":
        return _service().paste_fields
    if name in ("create_buttons", "bind_buttons", "image_from_url_text"):  # UI code: loaded on use
        from webui.ui import extension_ui
        return getattr(extension_ui, name)
    raise AttributeError(f"module 'modules.infotext_utils' has no attribute {name!r} in this web UI "
                         "(README: Extensions, A1111's module surface)")
