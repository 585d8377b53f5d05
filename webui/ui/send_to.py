""""Send to" buttons: infotext -> every field of a tab (the engine's paste rule, the same as the
API's `infotext` field), image -> img2img/inpaint/extras."""
from __future__ import annotations

import gradio as gr
from PIL import Image

from modules import infotext
from modules.generation import paste_infotext


def _widget_value(component, value):
    """Radios that hand the handler an index show a label: give them the label."""
    if isinstance(component, gr.Radio) and getattr(component, "type", "value") == "index":
        labels = [c[0] if isinstance(c, (list, tuple)) else c for c in component.choices]
        index = int(value)
        return labels[index] if 0 <= index < len(labels) else None
    return value


def paste(ui, fields: dict, text: str, script_fields: list | None = None) -> list:
    """Updates for a tab's components (in `fields` order, then the scripts' infotext fields): the
    infotext's fields, and its settings as "Override settings" entries the next job applies (the
    checkpoint only as the API would take it)."""
    values, settings, params = paste_infotext(ui.ctx, text or "")
    updates = []
    for name, component in fields.items():
        if name == "override_settings":  # replaced, not merged: a new paste is a new set of settings
            texts = infotext.setting_texts(params, settings)
            updates.append(gr.update(choices=texts, value=texts, visible=bool(texts)))
            continue
        value = _widget_value(component, values[name]) if name in values else None
        updates.append(gr.update(value=value) if value is not None else gr.skip())
    from webui.ui import extension_ui
    updates += extension_ui.script_values(script_fields or [], params)
    return updates


def wire(ui, tabs: dict, tab_set: gr.Tabs) -> None:
    png = tabs.get("pnginfo")
    for target, button_of in (("txt2img", lambda t: t.send_to_txt2img), ("img2img", lambda t: t.send_to_img2img)):
        tab = tabs.get(target)
        if png is None or tab is None:
            continue
        fields = {k: v for k, v in tab.fields.items() if k != "styles"}
        from webui.ui import extension_ui
        script_fields = extension_ui.script_paste_fields(ui, target)  # Script.infotext_fields

        def send(text, fields=fields, target=target, script_fields=script_fields):
            return [*paste(ui, fields, text, script_fields), gr.Tabs(selected=target)]
        button_of(png).click(send, inputs=png.infotext,
                             outputs=[*fields.values(), *(c for c, _ in script_fields), tab_set],
                             api_name=f"pnginfo_send_to_{target}")
    img, extras = tabs.get("img2img"), tabs.get("tab_extras")
    for name in ("txt2img", "img2img"):
        src = tabs.get(name)
        if src is not None and img is not None:
            _wire_image_send(src, img, tab_set)
        if src is not None and extras is not None:
            src.result.send_to_extras.click(lambda g: (_selected_image(g), gr.Tabs(selected="tab_extras")),
                                            inputs=src.result.gallery, outputs=[extras.image, tab_set],
                                            api_visibility="private")


def _selected_image(gallery, evt_index=0):
    if not gallery:
        raise gr.Error("Generate an image first")
    item = gallery[evt_index] if evt_index < len(gallery) else gallery[0]
    path = item[0] if isinstance(item, (list, tuple)) else getattr(item, "image", item)
    path = getattr(path, "path", path)
    return Image.open(path)


def _wire_image_send(src, img, tab_set) -> None:
    targets = img.inputs
    src.result.send_to_img2img.click(lambda g: (_selected_image(g), gr.Tabs(selected="img2img")),
                                     inputs=src.result.gallery, outputs=[targets["init_img"], tab_set],
                                     api_visibility="private")
    src.result.send_to_inpaint.click(
        lambda g: ({"background": _selected_image(g), "layers": [], "composite": None},
                   gr.Tabs(selected="img2img")),
        inputs=src.result.gallery, outputs=[targets["inpaint"], tab_set], api_visibility="private")
