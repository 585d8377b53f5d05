""""Send to" buttons: infotext -> every field of a tab (A1111's paste fields), image -> img2img/inpaint."""
from __future__ import annotations

import gradio as gr

# infotext key -> request field; "Size-1"/"Size-2" come from "Size: WxH" (parse_generation_parameters)
INFOTEXT_FIELDS = {
    "Prompt": "prompt", "Negative prompt": "negative_prompt", "Steps": "steps", "Sampler": "sampler_name",
    "Schedule type": "scheduler", "CFG scale": "cfg_scale", "Seed": "seed", "Size-1": "width",
    "Size-2": "height", "Variation seed": "subseed", "Variation seed strength": "subseed_strength",
    "Seed resize from-1": "seed_resize_from_w", "Seed resize from-2": "seed_resize_from_h",
    "Denoising strength": "denoising_strength", "Hires upscale": "hr_scale", "Hires steps": "hr_second_pass_steps",
    "Hires upscaler": "hr_upscaler", "Hires resize-1": "hr_resize_x", "Hires resize-2": "hr_resize_y",
    "Hires sampler": "hr_sampler_name", "Hires prompt": "hr_prompt", "Hires negative prompt": "hr_negative_prompt",
    "Mask blur": "mask_blur",
}
NUMERIC = {"steps", "cfg_scale", "seed", "width", "height", "subseed", "subseed_strength", "seed_resize_from_w",
           "seed_resize_from_h", "denoising_strength", "hr_scale", "hr_second_pass_steps", "hr_resize_x",
           "hr_resize_y", "mask_blur"}


def field_values(infotext: str) -> dict:
    """Request field -> value for an infotext; 'Model' / 'Model hash' come back as '_model'."""
    from modules.infotext import parse_generation_parameters
    params = parse_generation_parameters(infotext or "")
    values = {}
    for key, field in INFOTEXT_FIELDS.items():
        if key in params and params[key] not in (None, ""):
            value = params[key]
            if field in NUMERIC:
                try:
                    value = float(value)
                    value = int(value) if value.is_integer() and field != "cfg_scale" else value
                except (TypeError, ValueError):
                    continue
            values[field] = value
    if "Hires upscale" in params or "Hires resize-1" in params:
        values["enable_hr"] = True
    for key in ("Model hash", "Model"):
        if params.get(key):
            values["_model"] = str(params[key])
    return values


def paste(ui, fields: dict, infotext: str):
    """Updates for a tab's components (in `fields` order) plus the checkpoint when one matches."""
    values = field_values(infotext)
    scripts = ui.ctx.services.get("scripts")
    if scripts is not None:  # on_infotext_pasted: extensions read their own fields
        from modules.infotext import parse_generation_parameters
        scripts.infotext_pasted(infotext, parse_generation_parameters(infotext or ""))
    updates = [gr.update(value=values[name]) if name in values else gr.skip() for name in fields]
    return updates, values.get("_model")


def wire(ui, tabs: dict, tab_set: gr.Tabs) -> None:
    png = tabs.get("pnginfo")
    for target, button_of in (("txt2img", lambda t: t.send_to_txt2img), ("img2img", lambda t: t.send_to_img2img)):
        tab = tabs.get(target)
        if png is None or tab is None:
            continue
        fields = {k: v for k, v in tab.fields.items() if k != "styles"}

        def send(infotext, fields=fields, target=target):
            updates, model = paste(ui, fields, infotext)
            if model:
                _switch_model_if_present(ui, model)
            return [*updates, gr.Tabs(selected=target)]
        button_of(png).click(send, inputs=png.infotext, outputs=[*fields.values(), tab_set],
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


def _switch_model_if_present(ui, model: str) -> None:
    """Load the infotext's model when we have it (by hash or name); otherwise leave the current one."""
    ctx = ui.ctx
    if ctx.models is None:
        return
    info = ctx.models.catalog.get(model)
    if info is not None and (ctx.models.current is None or ctx.models.current.info != info):
        job = ctx.jobs.new_job("switch checkpoint")
        ctx.jobs.run(job, lambda _job: ctx.models.load(info))
        ctx.opts.set("sd_model_checkpoint", info.title)


def _selected_image(gallery, evt_index=0):
    if not gallery:
        raise gr.Error("Generate an image first")
    item = gallery[evt_index] if evt_index < len(gallery) else gallery[0]
    path = item[0] if isinstance(item, (list, tuple)) else getattr(item, "image", item)
    path = getattr(path, "path", path)
    from PIL import Image
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
