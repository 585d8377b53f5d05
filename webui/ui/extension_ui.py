"""The page parts extensions see besides their own controls: A1111's javascript helpers and `opts`
in the page head, paste/"send to" buttons they registered (modules.infotext_utils), and the
infotext fields of their scripts (Script.infotext_fields) filled when an infotext is pasted."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import gradio as gr
from PIL import Image

from modules.context import AppContext
from modules.image_metadata import read_info_from_image

HELPERS = Path(__file__).with_name("javascript") / "extension_helpers.js"


def _json_safe(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    return out


def head(ctx: AppContext) -> str:
    """`opts` (the settings as the page loads), A1111's helpers, then the extensions' scripts."""
    scripts = ctx.services.scripts
    if scripts is None:
        return ""
    opts = json.dumps(_json_safe(ctx.opts.as_dict())).replace("</", "<\\/")
    helpers = HELPERS.read_text(encoding="utf-8")
    return (f'<script type="text/javascript">window.opts = {opts};</script>\n'
            f'<script type="text/javascript" data-file="extension_helpers.js">\n{helpers}\n</script>\n'
            + scripts.javascript())


# -- infotext_utils' UI functions ---------------------------------------------------------------------
def image_from_url_text(filedata):
    """A Gradio image value, a file path or a data: URL -> a PIL image (None for none)."""
    if filedata is None:
        return None
    if isinstance(filedata, Image.Image):
        return filedata
    if isinstance(filedata, list):
        filedata = filedata[0] if filedata else None
        return image_from_url_text(filedata)
    if isinstance(filedata, dict):
        filedata = filedata.get("path") or filedata.get("name") or filedata.get("url")
    text = str(getattr(filedata, "path", filedata))
    if text.startswith("data:image/"):
        return Image.open(io.BytesIO(base64.b64decode(text.split(",", 1)[1])))
    return Image.open(text)


def create_buttons(tabs_list: list[str]) -> dict:
    """"Send to <tab>" buttons (A1111's elem_ids `<tab>_tab`)."""
    names = {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "inpaint", "extras": "extras"}
    return {tab: gr.Button(f"Send to {names.get(tab, tab)}", elem_id=f"{tab}_tab") for tab in tabs_list}


def bind_buttons(buttons: dict, send_image, send_generate_info) -> None:
    from modules.infotext_utils import ParamBinding, register_paste_params_button
    for tab, button in buttons.items():
        source_text = send_generate_info if isinstance(send_generate_info, gr.components.Component) else None
        source_tab = send_generate_info if isinstance(send_generate_info, str) else None
        register_paste_params_button(ParamBinding(button, tab, source_text_component=source_text,
                                                  source_image_component=send_image, source_tabname=source_tab))


# -- wiring what extensions registered --------------------------------------------------------------------
def _source_text(text, image) -> str:
    if text:
        return str(text)
    picture = image_from_url_text(image) if image is not None else None
    return (read_info_from_image(picture)[0] or "") if picture is not None else ""


def _wire_to_generation_tab(ui, binding, tab, tab_set, target: str) -> None:
    from webui.ui import send_to
    fields = {k: v for k, v in tab.fields.items() if k != "styles"}
    extra = script_paste_fields(ui, target)
    sources = [c for c in (binding.source_text_component, binding.source_image_component) if c is not None]
    init_img = getattr(tab, "inputs", {}).get("init_img") if binding.source_image_component is not None else None

    def paste(*values):
        text_value = values[0] if binding.source_text_component is not None else None
        image_value = values[-1] if binding.source_image_component is not None else None
        text = _source_text(text_value, image_value)
        updates = send_to.paste(ui, fields, text, extra) if text else [gr.skip() for _ in [*fields, *extra]]
        if init_img is not None:
            updates.append(image_from_url_text(image_value) if image_value is not None else gr.skip())
        return [*updates, gr.Tabs(selected=target)]

    outputs = [*fields.values(), *(c for c, _ in extra), *([init_img] if init_img is not None else []), tab_set]
    binding.paste_button.click(paste, inputs=sources, outputs=outputs, api_visibility="private")


def _wire_to_extension_tab(ui, binding, target: dict) -> None:
    fields = [(c, key) for c, key in target["fields"] if isinstance(c, gr.components.Component)]
    sources = [c for c in (binding.source_text_component, binding.source_image_component) if c is not None]
    init_img = target.get("init_img") if binding.source_image_component is not None else None

    def paste(*values):
        text_value = values[0] if binding.source_text_component is not None else None
        image_value = values[-1] if binding.source_image_component is not None else None
        params = ui.ctx.services.scripts.infotext_pasted(_source_text(text_value, image_value),
                                                         _parse(_source_text(text_value, image_value)))
        updates = [gr.update(value=_field_value(c, key, params)) if _field_value(c, key, params) is not None
                   else gr.skip() for c, key in fields]
        if init_img is not None:
            updates.append(image_from_url_text(image_value))
        return updates

    outputs = [c for c, _ in fields] + ([init_img] if init_img is not None else [])
    binding.paste_button.click(paste, inputs=sources, outputs=outputs, api_visibility="private")


def _parse(text: str) -> dict:
    from modules import infotext
    return infotext.parse_generation_parameters(text or "")


def wire_paste_bindings(ctx: AppContext, ui, tabs: dict, tab_set) -> None:
    """Connect the buttons extensions registered with infotext_utils.register_paste_params_button."""
    service = ctx.services.scripts
    if service is None:
        return
    for binding in service.paste_bindings:
        tab = tabs.get(binding.tabname)
        if tab is not None and hasattr(tab, "fields"):
            _wire_to_generation_tab(ui, binding, tab, tab_set, binding.tabname)
        elif binding.tabname in service.paste_fields:
            _wire_to_extension_tab(ui, binding, service.paste_fields[binding.tabname])
        else:
            service.registry.report("(paste buttons)", f"paste button to {binding.tabname!r}",
                                    f"no tab named {binding.tabname!r} to paste into; the button does nothing")


# -- Script.infotext_fields ----------------------------------------------------------------------------------
def script_paste_fields(ui, tab: str) -> list:
    """(component, infotext key or fn) of the tab's scripts (A1111's Script.infotext_fields)."""
    runner = ui.scripts_runner(tab == "img2img")
    out = []
    for script in runner.scripts if runner is not None else []:
        for component, key in getattr(script, "infotext_fields", None) or []:
            if isinstance(component, gr.components.Component):
                out.append((component, key))
    return out


def _field_value(component, key, params: dict):
    """A1111's rule: key is an infotext key (its string converted to the control's type) or a
    function of the parsed parameters."""
    value = key(params) if callable(key) else params.get(key)
    if value is None:
        return None
    if isinstance(component, gr.Checkbox):
        return str(value).strip().lower() in ("true", "1", "yes") if isinstance(value, str) else bool(value)
    if isinstance(component, (gr.Slider, gr.Number)) and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() and getattr(component, "precision", None) == 0 else number
    return value


def script_values(fields: list, params: dict) -> list:
    """Updates for the scripts' infotext fields from the parsed infotext."""
    out = []
    for component, key in fields:
        value = _field_value(component, key, params)
        out.append(gr.update(value=value) if value is not None else gr.skip())
    return out

