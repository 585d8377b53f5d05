"""What the generation tabs share: building the request, running it, and the common buttons."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from modules.context import AppContext
from webui.ui import generation, named_params, widgets

INT_FIELDS = {"steps", "width", "height", "n_iter", "batch_size", "seed", "subseed", "seed_resize_from_w",
              "seed_resize_from_h", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "mask_blur",
              "inpainting_fill", "inpaint_full_res_padding", "resize_mode"}


@dataclass
class GenerationTab:
    name: str
    fields: dict[str, Any]           # request field name -> component
    result: widgets.ResultPanel
    prompt: widgets.PromptRow
    event: Any


def common_fields(prompt: widgets.PromptRow, sampler: widgets.SamplerRow, size: widgets.SizeRow,
                  seed: widgets.SeedRow) -> dict[str, Any]:
    """Request field -> component for what txt2img and img2img share (A1111's field names)."""
    return {
        "prompt": prompt.prompt, "negative_prompt": prompt.negative_prompt, "styles": prompt.styles,
        "sampler_name": sampler.sampler_name, "scheduler": sampler.scheduler, "steps": sampler.steps,
        "width": size.width, "height": size.height, "n_iter": size.batch_count, "batch_size": size.batch_size,
        "cfg_scale": size.cfg_scale, "seed": seed.seed, "subseed": seed.subseed,
        "subseed_strength": seed.subseed_strength, "seed_resize_from_w": seed.seed_resize_from_w,
        "seed_resize_from_h": seed.seed_resize_from_h,
    }


def named_generator(impl, inputs: dict[str, Any]):
    """The generation handler with one named parameter per input, defaulting to the component's value."""
    return named_params.named(impl, {name: getattr(c, "value", None) for name, c in inputs.items()}, generator=True)


def script_kwargs(components: list) -> dict[str, Any]:
    """Extensions' controls as named inputs (script_args_0, ...), in the order their scripts expect."""
    return {f"script_args_{i}": c for i, c in enumerate(components)}


def clean_request(ctx: AppContext, request: dict) -> dict:
    """UI values -> request fields: ints, 'use same' choices, unset seeds, size limits."""
    out = {}
    for key, value in request.items():
        if key in INT_FIELDS and value is not None:
            value = int(value)
        out[key] = value
    for key in ("seed_resize_from_w", "seed_resize_from_h"):
        if out.get(key) == 0:
            out[key] = -1
    if out.get("hr_sampler_name") == "Use same sampler":
        out["hr_sampler_name"] = None
    limit = ctx.opts.img_max_size
    for key in ("width", "height"):
        if key in out and out[key] > limit:
            raise gr.Error(f"{key.title()} {out[key]} is over the limit of {limit} px (setting img_max_size)")
    return out


def make_processing(ctx: AppContext, kind: str, request: dict):
    from modules.processing import objects as pt
    cls = pt.StableDiffusionProcessingTxt2Img if kind == "txt2img" else pt.StableDiffusionProcessingImg2Img
    return cls(**clean_request(ctx, request))


def generate(ctx: AppContext, ui, kind: str, request: dict, script_values: list, result: widgets.ResultPanel, t0):
    """The Gradio generator behind Generate: yields updates for the result panel."""
    from modules import processing, startup
    from modules.processing.objects import ProcessingEnv

    p = make_processing(ctx, kind, request)

    def work(job):
        loaded = startup.current_model(ctx)
        p.sd_model = loaded.model
        p.env = ProcessingEnv.from_context(ctx, job=job)
        processed = ui.run_script(p, script_values)
        return processed if processed is not None else processing.process_images(p)

    previews = ctx.opts.live_previews_enable
    for kind_, value, preview in generation.run_job(ctx, kind, work):  # preview: the job when done
        if kind_ == "progress":
            yield (gr.skip(), gr.skip(), gr.skip(), value,
                   gr.update(value=preview, visible=True) if previews and preview is not None else gr.skip(),
                   gr.skip())
        else:
            tmp = Path(tempfile.mkdtemp(prefix="gallery-", dir=ui.tmp_dir))
            files, infotext, seeds = generation.gallery_outputs(value, tmp)
            info = (generation.interrupted_html(preview) + generation.comments_html(value)
                    + f"<p>{generation.wait_seconds(t0)}</p>")
            yield files, infotext, info, "", gr.update(value=None, visible=False), seeds


def wire_common(ctx: AppContext, ui, tab: str, prompt: widgets.PromptRow, seed: widgets.SeedRow,
                result: widgets.ResultPanel) -> None:
    prompt.interrupt.click(lambda: ctx.jobs.interrupt() and None, api_name=f"{tab}_interrupt", queue=False)
    prompt.skip.click(lambda: ctx.jobs.skip() and None, api_name=f"{tab}_skip", queue=False)
    seed.reuse.click(widgets.reuse_seed_value, inputs=[result.seeds, seed.seed], outputs=seed.seed,
                     show_progress="hidden", api_visibility="private")
    for box, counter in ((prompt.prompt, prompt.prompt_tokens), (prompt.negative_prompt, prompt.negative_tokens)):
        box.input(ui.token_counter_html, inputs=box, outputs=counter, show_progress="hidden",
                  trigger_mode="always_last", api_visibility="private", queue=False)
    prompt.save_style.click(ui.save_style, inputs=[prompt.style_name, prompt.prompt, prompt.negative_prompt],
                            outputs=[prompt.styles, prompt.style_name], api_name=f"{tab}_save_style")
    prompt.apply_styles.click(ui.apply_styles, inputs=[prompt.prompt, prompt.negative_prompt, prompt.styles],
                              outputs=[prompt.prompt, prompt.negative_prompt, prompt.styles],
                              api_visibility="private")
