"""Quick settings: checkpoint (with refresh), VAE and clip skip, as in A1111's top bar.

Switching the checkpoint goes through the job queue, so it never happens under a running job.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from modules import startup
from modules.context import AppContext
from modules.models import family as model_families

REFRESH = "\U0001f504"  # 🔄


def model_family(config: str | None) -> str:
    """A short family name from the config the checkpoint was loaded with."""
    family = model_families.for_config(config)
    if family is not None and family.prediction == "flow":
        return family.title
    name = str(config or "").rsplit("/", 1)[-1].removesuffix(".yaml")
    families = [("x4-upscaling", "x4 upscaler"), ("midas", "v2 depth"), ("v2-inpainting", "v2 inpainting"),
                ("v1-inpainting", "v1 inpainting"), ("v2-inference-v", "v2-v"), ("v2", "v2"), ("v1", "v1")]
    for key, family in families:
        if key in name:
            return family
    return name or "unknown"


def model_status(ctx: AppContext) -> str:
    current = ctx.models.current if ctx.models else None
    if current is None:
        return "No model loaded yet (it loads on first use)."
    demo = startup.is_demo(current.info)
    inpainting = "inpainting" in str(current.config or "")
    layout = "SD3" if getattr(current.model, "parameterization", "") == "flow" else "v1"
    folder = Path(current.info.filename).parent.name
    kind = SCENE_DEMOS.get(folder, (f"demo {'inpainting ' if inpainting else ''}model, {layout} layout", ""))[0]
    text = f"Loaded: **{current.info.title}** ({kind if demo else model_family(current.config)})"
    if demo:
        size = startup.native_size(ctx)
        what = SCENE_DEMOS[folder][1] if folder in SCENE_DEMOS else (
            f"a small demo model trained on coloured shapes at {size}x{size} (try \"a red circle\")")
        text += (f" - {what}; put real checkpoints (SD v1, v2, SD3) into `{ctx.paths.ckpt_dirs[0]}` and press "
                 f"{REFRESH}.")
    for note in getattr(current.model, "notes", ()):  # e.g. an SD3 model running without T5
        text += f" - {note}"
    return text


SCENE_DEMOS = {  # folder -> (kind, what it is for)
    "demo-depth": ("demo depth model, v2 depth layout",
                   "a small demo trained on shapes before a background at 64x64: use it in the depth2img tab"),
    "demo-x4": ("demo x4 upscaler, x4 layout",
                "a small demo that upscales 16x16 pictures of shapes to 64x64: use it as 'SD x4' in Extras"),
}


def switch_checkpoint(ctx: AppContext, title: str):
    if not title:
        return model_status(ctx)
    job = ctx.jobs.new_job("switch checkpoint")
    try:
        ctx.jobs.run(job, lambda _job: ctx.models.load(title))
    except ValueError as e:
        raise gr.Error(str(e)) from None
    ctx.opts.set("sd_model_checkpoint", ctx.models.current.info.title)
    ctx.opts.save()
    return model_status(ctx)


def switch_vae(ctx: AppContext, choice: str):
    job = ctx.jobs.new_job("switch VAE")
    try:
        ctx.jobs.run(job, lambda _job: ctx.models.set_vae(choice))
    except ValueError as e:
        raise gr.Error(str(e)) from None
    ctx.opts.set("sd_vae", choice)
    ctx.opts.save()
    return model_status(ctx)


def set_clip_skip(ctx: AppContext, value) -> None:
    ctx.opts.set("CLIP_stop_at_last_layers", int(value))
    ctx.opts.save()


def checkpoint_update(ctx: AppContext, ui):
    """The checkpoint dropdown after a file was added or the model switched elsewhere (merger, cards)."""
    current = ctx.models.current if ctx.models else None
    return gr.update(choices=ui.checkpoint_titles(), value=current.info.title) if current else \
        gr.update(choices=ui.checkpoint_titles())


def create(ctx: AppContext, ui) -> tuple[gr.Markdown, gr.Dropdown | None]:
    """The bar; returns the model status line and the checkpoint dropdown (None when not a quick setting)."""
    quick = set(ctx.opts.quicksettings_list)
    ckpt = None
    with gr.Row(elem_id="quicksettings"):
        if "sd_model_checkpoint" in quick:
            current = ctx.models.current if ctx.models else None
            value = current.info.title if current else (ctx.opts.sd_model_checkpoint or None)
            titles = ui.checkpoint_titles()
            ckpt = gr.Dropdown(label="Stable Diffusion checkpoint", choices=titles,
                               value=value if value in titles else (titles[0] if titles else None),
                               elem_id="setting_sd_model_checkpoint", scale=3)
            refresh = gr.Button(REFRESH, elem_id="refresh_sd_model_checkpoint", size="sm", min_width=40, scale=0)
        if "sd_vae" in quick:
            vae = gr.Dropdown(label="SD VAE", choices=ui.vae_names(), value=ctx.opts.sd_vae,
                              elem_id="setting_sd_vae", scale=2)
        if "CLIP_stop_at_last_layers" in quick:
            clip_skip = gr.Slider(1, 12, value=ctx.opts.CLIP_stop_at_last_layers, step=1, label="Clip skip",
                                  elem_id="setting_CLIP_stop_at_last_layers", scale=2)
    status = gr.Markdown(model_status(ctx), elem_id="sd_model_status")
    for warning in ctx.opts.warnings:
        gr.Markdown(f"**Warning:** {warning}")
    if "sd_model_checkpoint" in quick:
        ckpt.input(lambda t: switch_checkpoint(ctx, t), inputs=ckpt, outputs=status,
                   api_name="switch_checkpoint", concurrency_id="generation", concurrency_limit=None)

        def do_refresh():
            ctx.models.refresh()
            titles = ui.checkpoint_titles()
            return gr.update(choices=titles), model_status(ctx)
        refresh.click(do_refresh, outputs=[ckpt, status], api_name="refresh_checkpoints")
    if "sd_vae" in quick:
        vae.input(lambda c: switch_vae(ctx, c), inputs=vae, outputs=status, api_name="switch_vae",
                  concurrency_id="generation", concurrency_limit=None)
    if "CLIP_stop_at_last_layers" in quick:
        clip_skip.release(lambda v: set_clip_skip(ctx, v), inputs=clip_skip, api_visibility="private")
    return status, ckpt
