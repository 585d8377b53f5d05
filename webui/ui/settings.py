"""Settings tab: every option of the registry, grouped by section, with Apply and Reload UI."""
from __future__ import annotations

import re

import gradio as gr

from modules import request_settings
from modules.context import AppContext
from modules.errors import RequestError
from modules.options import OptionInfo
from webui.ui import named_params

SECTIONS = {
    "sd": "Stable Diffusion", "sampler": "Sampler parameters", "optimizations": "Optimizations", "saving": "Saving images",
    "paths": "Paths for saving", "previews": "Live previews", "ui": "User interface",
    "upscaling": "Upscaling", "face-restoration": "Face restoration", "extensions": "Extensions",
}


def component_for(key: str, info: OptionInfo, value, choices_for=None):
    """The Gradio control for one option (elem_id `setting_<key>` as in A1111)."""
    kw = dict(label=info.label, elem_id=f"setting_{key}", info=info.comment or None)
    kind = info.value_kind()
    dynamic = choices_for(key) if choices_for else None
    if dynamic is not None:
        return gr.Dropdown(choices=dynamic, value=value, allow_custom_value=True, **kw)
    if info.choices is not None:
        if kind == "list":
            return gr.Dropdown(choices=list(info.choices), value=value, multiselect=True, **kw)
        return gr.Dropdown(choices=list(info.choices), value=value, **kw)
    if kind == "bool":
        return gr.Checkbox(value=value, **kw)
    if kind in ("int", "float") and info.minimum is not None and info.maximum is not None:
        step = info.step or (1 if kind == "int" else 0.01)
        return gr.Slider(minimum=info.minimum, maximum=info.maximum, step=step, value=value, **kw)
    if kind in ("int", "float"):
        return gr.Number(value=value, precision=0 if kind == "int" else None, **kw)
    if kind == "list":
        return gr.Dropdown(choices=list(value), value=value, multiselect=True, allow_custom_value=True, **kw)
    return gr.Textbox(value=value, **kw)


def apply_settings(ctx: AppContext, keys: list[str], values: list) -> str:
    """Check every changed value the way the API does, save atomically; returns the message shown
    under the button."""
    changed = {}
    for key, value in zip(keys, values, strict=True):
        if value is None:  # not sent (API clients may send only what they change)
            continue
        info = ctx.opts.registry[key]
        if info.value_kind() == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)
        if value != ctx.opts.get(key):
            changed[key] = value
    if not changed:
        return "Nothing changed."
    try:
        request_settings.apply_settings(ctx, changed)
    except RequestError as e:
        raise gr.Error(str(e)) from None
    except OSError as e:
        raise gr.Error(f"Settings could not be saved to {ctx.paths.config_file}: {e.strerror}") from None
    restart = [k for k in changed if ctx.opts.registry[k].restart]
    msg = f"{len(changed)} settings changed: {', '.join(changed)}."
    if restart:
        msg += f" Reload the UI for {', '.join(restart)} to take effect."
    return msg


def parameter_names(keys: list[str]) -> list[str]:
    """Setting keys as Python identifiers (the key itself when it is one), each distinct."""
    names, seen = [], set()
    for key in keys:
        name = key if key.isidentifier() else re.sub(r"\W", "_", key)
        name = name if name.isidentifier() else f"setting_{name}"
        while name in seen:
            name += "_"
        seen.add(name)
        names.append(name)
    return names


def create_tab(ctx: AppContext, choices_for=None) -> None:
    keys, components = [], []
    with gr.Row():
        apply = gr.Button("Apply settings", variant="primary", elem_id="settings_submit")
        reload = gr.Button("Reload UI", elem_id="settings_restart_gradio")
    result = gr.Markdown(elem_id="settings_result")
    # a quick setting lives in the top bar only (as in A1111): one control, one value, one elem_id
    quick = set(ctx.opts.quicksettings_list)
    by_section: dict[str, list[str]] = {}
    for key, info in ctx.opts.registry.items():
        if key not in quick:
            by_section.setdefault(info.section, []).append(key)
    if quick:
        gr.Markdown(f"Quick settings ({', '.join(ctx.opts.registry[k].label for k in ctx.opts.quicksettings_list if k in ctx.opts.registry)}) "
                    "are in the bar at the top of the page.", elem_id="settings_quicksettings_note")
    with gr.Tabs(elem_id="settings"):
        for section, section_keys in by_section.items():
            title = SECTIONS.get(section) or ctx.opts.section_labels.get(section) or section.title()
            with gr.Tab(title, elem_id=f"settings_{section}"):
                for key in section_keys:
                    keys.append(key)
                    components.append(component_for(key, ctx.opts.registry[key], request_settings.current_value(ctx, key), choices_for))
    # one named parameter per setting key, default None = unchanged (extensions' keys such as
    # "tac_activeIn.txt2img" become valid parameter names: "tac_activeIn_txt2img")
    names = parameter_names(keys)
    apply_fn = named_params.named(lambda **values: apply_settings(ctx, keys, [values[n] for n in names]),
                                  dict.fromkeys(names))
    apply.click(apply_fn, inputs_kwargs=dict(zip(names, components, strict=True)), outputs=result,
                api_name="apply_settings")
    reload.click(None, js="() => { setTimeout(() => location.reload(), 200); }")
