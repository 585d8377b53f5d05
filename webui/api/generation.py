"""txt2img / img2img requests -> one job in the shared queue -> A1111's response.

The request is checked first (422 naming the field), then waits for its turn in `ctx.jobs` (the
same FIFO the web UI uses, so API and UI jobs never run at once), then runs in the calling worker
thread with the settings overridden for that job and the model manager's lock held.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from typing import Any, Callable

import pydantic

from modules import devices
from modules.context import AppContext
from webui.api import imagecodec, scripts_api, validation
from webui.api.errors import ApiError, field_error
from webui.api.models import StableDiffusionImg2ImgProcessingAPI, StableDiffusionTxt2ImgProcessingAPI

log = logging.getLogger("sdwebui.api")

# request fields that steer the API itself and are not processing attributes
API_ONLY = {"sampler_index", "script_name", "script_args", "send_images", "save_images", "alwayson_scripts",
            "infotext", "force_task_id", "init_images", "mask", "latent_mask", "firstpass_image", "refiner_checkpoint",
            "refiner_switch_at", "comments", "hr_checkpoint_name", "override_settings"}


def _processing():
    from modules import processing
    return processing


def require_models(ctx: AppContext):
    if ctx.models is None:
        raise ApiError(503, "no checkpoint loader is attached to this server, so nothing can be generated")
    return ctx.models


def ensure_model_loaded(ctx: AppContext):
    """The loaded model; loads the default one (--ckpt, the setting, the first found) when none is,
    as the UI does."""
    from modules import startup

    require_models(ctx)
    try:
        return startup.current_model(ctx)
    except startup.NoCheckpoint as e:
        raise ApiError(503, f"{e} (or POST /sdapi/v1/refresh-checkpoints)") from None


@contextlib.contextmanager
def job_settings(ctx: AppContext, overrides: dict[str, Any], restore: bool):
    """override_settings for one job: options, and the checkpoint/VAE they name; restored after
    unless the request said override_settings_restore_afterwards=false."""
    models = ctx.models
    previous_ckpt = models.current.info if models is not None and models.current is not None else None
    previous_vae = getattr(models, "vae_choice", None)
    with ctx.opts.override(overrides, restore=restore):
        try:
            if overrides.get("sd_model_checkpoint"):
                models.load(overrides["sd_model_checkpoint"])
            if "sd_vae" in overrides:
                models.set_vae(overrides["sd_vae"])
            yield
        finally:
            if restore and "sd_vae" in overrides and previous_vae is not None:
                models.set_vae(previous_vae)
            if restore and overrides.get("sd_model_checkpoint") and previous_ckpt is not None:
                models.load(previous_ckpt)


def processing_kwargs(cls, req, extra: dict[str, Any]) -> dict[str, Any]:
    """The request's fields that are processing attributes; a null where the engine has a non-null
    default means "the default" (A1111's API treats null the same way)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {k: v for k, v in req.model_dump().items() if k in fields and k not in API_ONLY}
    values.update(extra)
    return {k: v for k, v in values.items()
            if k in fields and not (v is None and fields[k].default not in (None, dataclasses.MISSING))}


def _common_checks(ctx: AppContext, req) -> dict[str, Any]:
    validation.check_unsupported(req)
    validation.check_size(ctx, req)
    sampler, scheduler = validation.sampler_and_scheduler(req.sampler_name or req.sampler_index, req.scheduler)
    overrides = validation.check_override_settings(ctx, req.override_settings)
    return {"sampler_name": sampler, "scheduler": scheduler, "override_settings": overrides,
            "do_not_save_samples": not req.save_images, "do_not_save_grid": not req.save_images,
            "styles": list(req.styles or [])}


def apply_infotext(ctx: AppContext, req):
    """A1111's `infotext` field: the parameters of a pasted infotext fill the fields the request did
    not set; its settings (Clip skip, VAE...) join override_settings unless the request has them."""
    if not req.infotext:
        return req
    from modules import infotext

    fields, settings = infotext.to_request(infotext.parse_generation_parameters(req.infotext))
    data = req.model_dump()
    data.update({k: v for k, v in fields.items() if k in type(req).model_fields and k not in req.model_fields_set})
    overrides = dict(req.override_settings or {})
    for key, value in settings.items():
        if key in overrides or key not in ctx.opts.registry:
            continue
        if key == "sd_model_checkpoint" and (ctx.models is None or ctx.models.catalog.get(str(value)) is None):
            continue  # A1111 keeps the current model when the infotext's is not here
        overrides[key] = value
    data["override_settings"] = overrides
    try:
        return type(req).model_validate(data)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        raise field_error(("infotext", *first["loc"]), first["msg"]) from None


def txt2img(ctx: AppContext, req: StableDiffusionTxt2ImgProcessingAPI) -> dict:
    require_models(ctx)
    req = apply_infotext(ctx, req)
    extra = _common_checks(ctx, req)
    validation.check_hires(ctx, req)
    if req.enable_hr and (req.hr_sampler_name or req.hr_scheduler):
        extra["hr_sampler_name"], extra["hr_scheduler"] = validation.sampler_and_scheduler(
            req.hr_sampler_name or extra["sampler_name"], req.hr_scheduler, "hr_sampler_name", "hr_scheduler")
    plan = scripts_api.plan(ctx, False, req.script_name, req.script_args, req.alwayson_scripts)
    cls = _processing().StableDiffusionProcessingTxt2Img
    processed, inpainting = run_job(ctx, "txt2img", cls, processing_kwargs(cls, req, extra), req, plan)
    return response(req, processed, req.model_dump(), inpainting)


def img2img(ctx: AppContext, req: StableDiffusionImg2ImgProcessingAPI) -> dict:
    require_models(ctx)
    req = apply_infotext(ctx, req)
    extra = _common_checks(ctx, req)
    if not req.init_images:
        raise field_error("init_images", "img2img needs at least one init image (base64)")
    limit = int(ctx.opts.img_max_size)
    extra["init_images"] = [imagecodec.decode_image(text, ("init_images", i), limit)
                            for i, text in enumerate(req.init_images)]
    if req.mask:
        extra["mask"] = imagecodec.decode_image(req.mask, "mask", limit)
    if req.latent_mask:
        extra["latent_mask"] = imagecodec.decode_image(req.latent_mask, "latent_mask", limit)
    plan = scripts_api.plan(ctx, True, req.script_name, req.script_args, req.alwayson_scripts)
    cls = _processing().StableDiffusionProcessingImg2Img
    processed, inpainting = run_job(ctx, "img2img", cls, processing_kwargs(cls, req, extra), req, plan)
    echo = req.model_dump()
    if not req.include_init_images:
        echo["init_images"], echo["mask"] = None, None
    return response(req, processed, echo, inpainting)


def run_job(ctx: AppContext, name: str, cls, kwargs: dict[str, Any], req, plan: scripts_api.ScriptPlan):
    overrides = kwargs.get("override_settings") or {}
    job = ctx.jobs.new_job(name)

    def work(job):
        with ctx.models.lock, job_settings(ctx, overrides, req.override_settings_restore_afterwards):
            loaded = ensure_model_loaded(ctx)
            p = cls(**kwargs)
            p.sd_model = loaded.model
            p.env = _processing().ProcessingEnv.from_context(ctx, job=job)
            return _process(p, plan), _is_inpainting_model(loaded.model)

    return run_guarded(ctx, job, work)


def _process(p, plan: scripts_api.ScriptPlan):
    """A1111's order: the runner's run (setup, then the dropdown script if one was chosen, which
    usually calls process_images itself); without a dropdown script, process_images with the
    AlwaysVisible scripts' hooks."""
    processing = _processing()
    try:
        if plan.runner is None:
            return processing.process_images(p)
        p.scripts, p.script_args = plan.runner, list(plan.script_args)
        processed = plan.runner.run(p, *p.script_args)
        return processed if processed is not None else processing.process_images(p)
    finally:
        p.close()


def run_guarded(ctx: AppContext, job, work: Callable):
    """Run `work(job)` in the queue; the engine's ValueError (bad input it found) becomes a 422,
    an out-of-memory a 500 with its message."""
    try:
        return ctx.jobs.run(job, work)
    except ApiError:
        raise
    except ValueError as e:  # the engine's message for input it cannot use; a script's crash is ours
        raise ApiError(500 if type(e).__name__ == "ScriptError" else 422, str(e)) from None
    except devices.OutOfMemory as e:
        log.warning("%s: %s", job.name, e)
        raise ApiError(500, str(e)) from None


def _is_inpainting_model(model) -> bool:
    return getattr(getattr(model, "model", None), "conditioning_key", None) in ("hybrid", "concat")


def info_json(processed, inpainting: bool = False) -> str:
    info = json.loads(processed.js())
    info.setdefault("is_using_inpainting_conditioning", inpainting)
    info.setdefault("version", _version())
    return json.dumps(info, default=str)


def _version() -> str:
    from modules.processing.infotext import VERSION
    return VERSION


def response(req, processed, parameters: dict, inpainting: bool = False) -> dict:
    images = []
    if req.send_images:
        infotexts = list(getattr(processed, "infotexts", []) or [])
        for i, image in enumerate(processed.images):
            text = image.info.get("parameters") or (infotexts[i] if i < len(infotexts) else None)
            images.append(imagecodec.encode_png(image, text))
    return {"images": images, "parameters": parameters, "info": info_json(processed, inpainting)}
