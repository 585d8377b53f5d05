"""What the generation tabs share: building the request, running it, and the common buttons."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from modules import infotext
from modules.context import AppContext
from modules.generation import GenerationRequest
from webui.ui import generation, named_params, top_bar, widgets


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
        "seed_resize_from_h": seed.seed_resize_from_h, "override_settings": seed.override_settings,
    }


def named_generator(impl, inputs: dict[str, Any]):
    """The generation handler with one named parameter per input, defaulting to the component's value."""
    return named_params.named(impl, {name: getattr(c, "value", None) for name, c in inputs.items()}, generator=True)


def script_kwargs(components: list) -> dict[str, Any]:
    """Extensions' controls as named inputs (script_args_0, ...), in the order their scripts expect."""
    return {f"script_args_{i}": c for i, c in enumerate(components)}


def ui_params(request: dict) -> dict:
    """Widget values -> request fields: the UI's own conventions only (0 = unset for "resize seed
    from", "Use same sampler"); everything else is checked by the engine, as for the API."""
    out = dict(request)
    for key in ("seed_resize_from_w", "seed_resize_from_h"):
        if out.get(key) == 0:
            out[key] = -1
    if out.get("hr_sampler_name") == "Use same sampler":
        out["hr_sampler_name"] = None
    return out


def generate(ctx: AppContext, ui, kind: str, request: dict, script_values: list, result: widgets.ResultPanel, t0):
    """The Gradio generator behind Generate: yields updates for the result panel."""
    params = ui_params(request)
    overrides = infotext.override_settings_from_texts(params.pop("override_settings", None) or [])
    gen_request = GenerationRequest(kind, params, override_settings=overrides,
                                    ui_script_args=list(script_values) if script_values else None)
    previews = ctx.opts.live_previews_enable
    for kind_, value, preview in generation.run_job(ctx, gen_request):  # preview: the job when done
        if kind_ == "progress":
            yield (gr.skip(), gr.skip(), gr.skip(), value,
                   gr.update(value=preview, visible=True) if previews and preview is not None else gr.skip(),
                   gr.skip())
        else:
            tmp = Path(tempfile.mkdtemp(prefix="gallery-", dir=ui.tmp_dir))
            files, first_infotext, seeds = generation.gallery_outputs(value, tmp)
            info = (generation.interrupted_html(preview) + generation.comments_html(value)
                    + f"<p>{generation.wait_seconds(t0)}</p>")
            yield files, first_infotext, info, "", gr.update(value=None, visible=False), seeds


def wire_paste(ui, tab: GenerationTab) -> None:
    """↙️: the prompt box holds a pasted infotext -> every field of the tab (the API's paste rule);
    an empty prompt takes the last generation's infotext instead (A1111's behaviour)."""
    from webui.ui import send_to

    fields = tab.fields

    def paste(text, last):
        source = text if text and "\n" in text or (text and "Steps:" in text) else last
        if not source:
            raise gr.Error("Nothing to read: paste generation parameters into the prompt, or generate first")
        return send_to.paste(ui, fields, source)
    tab.prompt.paste.click(paste, inputs=[tab.prompt.prompt, tab.result.infotext], outputs=list(fields.values()),
                           api_visibility="private", show_progress="hidden")


def wire_common(ctx: AppContext, ui, tab: str, prompt: widgets.PromptRow, seed: widgets.SeedRow,
                result: widgets.ResultPanel) -> None:
    prompt.interrupt.click(lambda: ctx.jobs.interrupt() and None, api_name=f"{tab}_interrupt", queue=False)
    prompt.skip.click(lambda: ctx.jobs.skip() and None, api_name=f"{tab}_skip", queue=False)
    seed.reuse.click(widgets.reuse_seed_value, inputs=[result.seeds, seed.seed], outputs=seed.seed,
                     show_progress="hidden", api_visibility="private")
    for box, counter in ((prompt.prompt, prompt.prompt_tokens), (prompt.negative_prompt, prompt.negative_tokens)):
        # .change, not .input: text put in by a card, a style, paste or "send to" is counted too
        box.change(ui.token_counter_html, inputs=box, outputs=counter, show_progress="hidden",
                   trigger_mode="always_last", api_visibility="private", queue=False)
    if getattr(ui, "status", None) is not None:  # the model loads on first use: say which one is loaded now
        result.infotext.change(lambda: top_bar.model_status(ctx), outputs=ui.status, show_progress="hidden",
                               api_visibility="private", queue=False)
    prompt.save_style.click(ui.save_style, inputs=[prompt.style_name, prompt.prompt, prompt.negative_prompt],
                            outputs=[prompt.styles, prompt.style_name], api_name=f"{tab}_save_style")
    prompt.clear.click(lambda: ("", ""), outputs=[prompt.prompt, prompt.negative_prompt], api_visibility="private",
                       show_progress="hidden", queue=False)
    prompt.apply_styles.click(ui.apply_styles, inputs=[prompt.prompt, prompt.negative_prompt, prompt.styles],
                              outputs=[prompt.prompt, prompt.negative_prompt, prompt.styles],
                              api_visibility="private")
