"""A request checked before it is queued: every front end refuses the same input with the same message.

What is checked here: the task, text that cannot be stored (lone surrogates) and its length, numbers
(finite, in range; sizes and counts against the img_max_size / max_batch_count settings), sampler and
schedule names, hires fix settings, face restoration (its model present), fields this engine does not do, the settings overrides (through
modules.request_settings), the scripts, and the images an img2img / depth2img / extras job needs.
The result is a `Prepared` request with names resolved, which `execute` runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from modules import infotext, request_settings
from modules.errors import RequestError
from modules.generation import scripts as script_plans
from modules.generation.request import TASKS, GenerationRequest
from modules.options import is_valid_text
from modules.processing import hires
from modules.processing.sample import parse_layers
from modules.sampling.samplers import resolve_sampler_and_scheduler
from modules.sampling.schedules import find_scheduler

MAX_STEPS = 1000  # the models were trained on 1000 timesteps: more steps buy nothing
MAX_SIDE = 16384  # img_max_size's own upper bound; the setting usually says less
MAX_BATCH_SIZE = 64
MAX_SEED = 2**63 - 1
# Prompt text per field: about 5,000 CLIP tokens (70 chunks of 75). A longer text is almost surely a
# broken client, and encoding it would hold the queue for minutes on a CPU.
MAX_PROMPT_LENGTH = 20_000
PROMPT_FIELDS = ("prompt", "negative_prompt", "hr_prompt", "hr_negative_prompt")

# field -> (lowest, highest); a string names the setting that holds the highest value
RANGES: dict[str, tuple[float, float | str | None]] = {
    "steps": (1, MAX_STEPS), "batch_size": (1, MAX_BATCH_SIZE), "n_iter": (1, "max_batch_count"),
    "width": (8, "img_max_size"), "height": (8, "img_max_size"), "cfg_scale": (0.0, 100.0),
    "denoising_strength": (0.0, 1.0), "subseed_strength": (0.0, 1.0), "seed": (-1, MAX_SEED),
    "subseed": (-1, MAX_SEED), "seed_resize_from_w": (-1, MAX_SIDE), "seed_resize_from_h": (-1, MAX_SIDE),
    "eta": (0.0, 10.0), "s_churn": (0.0, 100.0), "s_tmin": (0.0, None), "s_tmax": (0.0, None),
    "s_noise": (0.0, 10.0), "s_min_uncond": (0.0, None),
    "hr_scale": (1.0, 8.0), "hr_second_pass_steps": (0, MAX_STEPS), "hr_resize_x": (0, MAX_SIDE),
    "hr_resize_y": (0, MAX_SIDE),
    "resize_mode": (0, 3), "mask_blur": (0, 256), "mask_blur_x": (0, 256), "mask_blur_y": (0, 256),
    "inpainting_fill": (0, 3), "inpaint_full_res_padding": (0, MAX_SIDE), "inpainting_mask_invert": (0, 1),
    "initial_noise_multiplier": (0.0, 2.0), "slg_scale": (0.0, 100.0), "slg_start": (0.0, 1.0), "slg_end": (0.0, 1.0),
    "upscaling_resize": (0.0, 8.0), "upscaling_resize_w": (1, MAX_SIDE), "upscaling_resize_h": (1, MAX_SIDE),
    "extras_upscaler_2_visibility": (0.0, 1.0), "gfpgan_visibility": (0.0, 1.0),
    "codeformer_visibility": (0.0, 1.0), "codeformer_weight": (0.0, 1.0),
}
INT_FIELDS = {"steps", "batch_size", "n_iter", "width", "height", "seed", "subseed", "seed_resize_from_w",
              "seed_resize_from_h", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "resize_mode",
              "mask_blur", "mask_blur_x", "mask_blur_y", "inpainting_fill", "inpaint_full_res_padding",
              "inpainting_mask_invert", "upscaling_resize_w", "upscaling_resize_h"}


@dataclass
class Prepared:
    """A checked request: params with names resolved, the overrides validated, the scripts laid out."""

    task: str
    params: dict[str, Any]
    override_settings: dict[str, Any] = field(default_factory=dict)
    restore_settings: bool = True
    scripts: script_plans.ScriptPlan = field(default_factory=script_plans.ScriptPlan)


def _check_text(name, value) -> None:
    if isinstance(value, str):
        if not is_valid_text(value):
            raise RequestError("the text is not valid Unicode (it holds a lone surrogate such as \\ud800): "
                               "send UTF-8 text", name)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_text((name, i) if isinstance(name, str) else (*name, i), item)


def _as_number(name: str, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"must be a number, got {value!r}", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"must be a finite number, got {value!r}", name)
    if name in INT_FIELDS:
        if isinstance(value, float) and not value.is_integer():
            raise RequestError(f"must be a whole number, got {value!r}", name)
        value = int(value)
    return value


def _check_numbers(ctx, params: dict) -> None:
    for name, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(f"must be a finite number, got {value!r}", name)
        if name not in RANGES or value is None:
            continue
        value = params[name] = _as_number(name, value)
        low, high = RANGES[name]
        limit = int(getattr(ctx.opts, high)) if isinstance(high, str) else high
        if value < low:
            raise RequestError(f"must be at least {low}, got {value}", name)
        if limit is not None and value > limit:
            why = f" (setting {high})" if isinstance(high, str) else ""
            raise RequestError(f"{value} is more than {limit}, the largest allowed{why}", name)


def _check_prompts(params: dict) -> None:
    for name in PROMPT_FIELDS:
        value = params.get(name)
        if isinstance(value, str) and len(value) > MAX_PROMPT_LENGTH:
            raise RequestError(f"the text has {len(value):,} characters; at most {MAX_PROMPT_LENGTH:,} are "
                               "accepted (about 5,000 tokens)", name)
    styles = params.get("styles")
    if styles is not None and not (isinstance(styles, (list, tuple)) and all(isinstance(s, str) for s in styles)):
        raise RequestError("must be a list of style names", "styles")


def _sampler(params: dict, sampler_field: str, scheduler_field: str, fallback=None) -> None:
    """A1111's matching: case-insensitive names and aliases, "automatic", old combined names such
    as "DPM++ 2M Karras"; the resolved names go back into params."""
    scheduler = params.get(scheduler_field)
    try:
        find_scheduler(scheduler)
    except ValueError as e:
        raise RequestError(str(e), scheduler_field) from None
    try:
        info, found = resolve_sampler_and_scheduler(params.get(sampler_field) or fallback, scheduler)
    except ValueError as e:
        raise RequestError(str(e), sampler_field) from None
    params[sampler_field], params[scheduler_field] = info.name, found.label


def _check_slg(params: dict) -> None:
    """Skip-layer guidance: layers as whole numbers, start before end (the model's depth is checked
    when it runs)."""
    if params.get("slg_layers") is not None:
        try:
            params["slg_layers"] = parse_layers(params["slg_layers"])
        except ValueError as e:
            raise RequestError(str(e), "slg_layers") from None
    start, end = params.get("slg_start"), params.get("slg_end")
    if start is not None and end is not None and start >= end:
        raise RequestError(f"must be after slg_start ({start}), got {end}", "slg_end")


def _check_restorer(ctx, field: str, name: str | None = None) -> None:
    """Face restoration asked for: the restorer's model must be in its folder (the message says which)."""
    service = ctx.services.face_restorers
    name = name or ctx.opts.face_restoration_model
    if service is None:
        raise RequestError("face restoration is not available on this server (no face restorer attached)", field)
    try:
        service.check(name)
    except ValueError as e:
        raise RequestError(str(e), field) from None


def _check_faces(ctx, params: dict, overrides: dict) -> None:
    wanted = params.get("restore_faces")
    if wanted is None:
        wanted = overrides.get("face_restoration", ctx.opts.face_restoration)
    if wanted:
        _check_restorer(ctx, "restore_faces", overrides.get("face_restoration_model"))


def _check_unsupported(params: dict) -> None:
    """Fields A1111 has that this engine does not do: refused clearly rather than ignored."""
    if params.get("firstpass_image"):
        raise RequestError("a hires fix from a given first-pass image is not supported: use img2img with that "
                           "image instead", "firstpass_image")
    if params.get("refiner_checkpoint") not in (None, "", "None"):
        raise RequestError("refiner checkpoints (SDXL) are not supported: leave it empty", "refiner_checkpoint")
    if params.get("hr_checkpoint_name") not in (None, "", "Use same checkpoint"):
        raise RequestError("a separate hires checkpoint is not supported: leave it empty", "hr_checkpoint_name")


def _check_hires(ctx, params: dict) -> None:
    if not params.get("enable_hr"):
        return
    if params.get("hr_upscaler") is not None:
        try:
            params["hr_upscaler"] = hires.check_upscaler(params["hr_upscaler"], ctx.services.upscalers)
        except ValueError as e:
            raise RequestError(str(e), "hr_upscaler") from None
    if params.get("hr_sampler_name") or params.get("hr_scheduler"):
        _sampler(params, "hr_sampler_name", "hr_scheduler", fallback=params.get("sampler_name"))
    limit = int(ctx.opts.img_max_size)
    width, height = params.get("width") or 512, params.get("height") or 512
    scale = params.get("hr_scale") or 2.0
    rx, ry = params.get("hr_resize_x") or 0, params.get("hr_resize_y") or 0
    target_w = rx or (int(width * scale) if not ry else 0)
    target_h = ry or (int(height * scale) if not rx else 0)
    if max(target_w, target_h) > limit:
        name = "hr_scale" if not (rx or ry) else "hr_resize_x"
        raise RequestError(f"the hires fix would make {target_w}x{target_h} images, larger than {limit} "
                           "(setting img_max_size)", name)


def _check_image(ctx, name, image, required: bool = True) -> None:
    if image is None:
        if required:
            raise RequestError("an image is needed", name)
        return
    if not isinstance(image, Image.Image):
        raise RequestError(f"expected an image, got {type(image).__name__}", name)
    limit = int(ctx.opts.img_max_size)
    if max(image.size) > limit:
        raise RequestError(f"the image is {image.width}x{image.height} pixels; the largest side allowed is "
                           f"{limit} (setting img_max_size)", name)


def _check_images(ctx, task: str, params: dict) -> None:
    if task == "img2img":
        images = params.get("init_images")
        if not images:
            raise RequestError("img2img needs at least one init image", "init_images")
        for i, image in enumerate(images):
            _check_image(ctx, ("init_images", i), image)
        for name in ("mask", "image_mask", "latent_mask"):
            _check_image(ctx, name, params.get(name), required=False)
    elif task in ("depth2img", "extras"):
        _check_image(ctx, "image", params.get("image"))
        _check_image(ctx, "depth_map", params.get("depth_map"), required=False)


def _check_extras(ctx, params: dict) -> None:
    for name, restorer in (("gfpgan_visibility", "GFPGAN"), ("codeformer_visibility", "CodeFormer")):
        if params.get(name):
            _check_restorer(ctx, name, restorer)
    table = ctx.services.upscalers
    for name in ("upscaler_1", "upscaler_2"):
        if params.get(name, "None") not in table:
            raise RequestError(f"unknown upscaler {params[name]!r}: use one of {', '.join(table.names())}", name)
    if params.get("resize_mode", 0) not in (0, 1):
        raise RequestError(f"must be 0 (scale by upscaling_resize) or 1 (to upscaling_resize_w x h), got "
                           f"{params['resize_mode']}", "resize_mode")
    if params.get("resize_mode") != 1 and params.get("upscaling_resize", 2.0) <= 0:
        raise RequestError("the upscale factor must be more than 0", "upscaling_resize")


def _apply_infotext(ctx, request: GenerationRequest, params: dict, overrides: dict) -> None:
    """A1111's `infotext` field: its parameters fill the fields the request did not set; its settings
    (Clip skip, VAE...) join the overrides unless the request has them (see paste_infotext)."""
    if not request.infotext:
        return
    _check_text("infotext", request.infotext)
    fields, settings, _ = paste_infotext(ctx, request.infotext)
    for key, value in fields.items():
        if params.get(key) is None:
            params[key] = value
    for key, value in settings.items():
        overrides.setdefault(key, value)


def paste_infotext(ctx, text: str) -> tuple[dict, dict, dict]:
    """An infotext -> (request fields, settings, the parsed parameters), as both the API's `infotext`
    field and the web UI's paste buttons apply it (A1111's get_override_settings): extensions'
    on_infotext_pasted may edit the parsed parameters first; settings this server lacks, or equal to
    the current value, are left out, and so is the checkpoint unless `disable_weights_auto_swap` is
    off and the model is here."""
    params = infotext.parse_generation_parameters(text or "")
    if ctx.services.scripts is not None:
        ctx.services.scripts.infotext_pasted(text, params)
    fields, settings = infotext.to_request(params)
    kept = {}
    for key, value in settings.items():
        if key not in ctx.opts.registry:
            continue
        if key == "sd_model_checkpoint":
            info = ctx.models.catalog.get(str(value)) if ctx.models is not None else None
            current = ctx.models.current if ctx.models is not None else None
            if ctx.opts.disable_weights_auto_swap or info is None or (current is not None and current.info == info):
                continue
            value = info.title
        elif ctx.opts.get(key) == value:
            continue
        kept[key] = value
    return fields, kept, params


def _script_plan(ctx, request: GenerationRequest) -> script_plans.ScriptPlan:
    if request.task not in ("txt2img", "img2img"):
        return script_plans.ScriptPlan()
    service = ctx.services.scripts
    runner = service.runner(request.task == "img2img") if service is not None else None
    if request.ui_script_args is not None and runner is not None:
        return script_plans.from_ui(runner, request.ui_script_args)
    return script_plans.from_api(runner, request.task, request.script_name, list(request.script_args or []),
                                 dict(request.alwayson_scripts or {}))


def prepare(ctx, request: GenerationRequest) -> Prepared:
    """Check a request (RequestError naming the field) and resolve its names."""
    if request.task not in TASKS:
        raise RequestError(f"unknown task {request.task!r}: one of {', '.join(TASKS)}", "task")
    params = dict(request.params)
    overrides = dict(request.override_settings or {})
    _apply_infotext(ctx, request, params, overrides)
    for name, value in params.items():
        _check_text(name, value)
    _check_numbers(ctx, params)
    _check_prompts(params)
    _check_images(ctx, request.task, params)
    if request.task == "extras":
        _check_extras(ctx, params)
    else:
        _check_unsupported(params)
        _sampler(params, "sampler_name", "scheduler")
        _check_slg(params)
    if request.task == "txt2img":
        _check_hires(ctx, params)
    overrides = request_settings.validate_settings(ctx, overrides, prefix=("override_settings",))
    if request.task in ("txt2img", "img2img"):
        _check_faces(ctx, params, overrides)
    return Prepared(request.task, params, overrides, bool(request.restore_settings), _script_plan(ctx, request))
