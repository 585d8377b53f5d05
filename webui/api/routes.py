"""The /sdapi/v1 routes (A1111-compatible). `install(app, ctx)` is called by webui.server with --api.

Generation and model changes are plain `def` routes: FastAPI runs them in its worker threads, where
they wait for their turn in `ctx.jobs` and run. Progress, interrupt and skip are `async`: they answer
from the event loop at once, however many generation requests are waiting.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.context import AppContext
from modules.options import OptionError
from webui.api import extras, generation, imagecodec, listings, models, scripts_api, validation
from webui.api.auth import basic_auth_dependency
from webui.api.errors import ApiError, SafeRoute, field_error, http_error_handler, install_handlers

log = logging.getLogger("sdwebui.api")
PREFIX = "/sdapi/v1"


def install(app: FastAPI, ctx: AppContext) -> None:
    """Add the API routes (behind HTTP Basic when --api-auth is set) and its error handlers."""
    from modules import cmd_args

    dependencies = []
    if getattr(ctx.args, "api_auth", None):
        pairs = cmd_args.parse_credentials(ctx.args.api_auth, "--api-auth")
        dependencies.append(Depends(basic_auth_dependency(pairs)))
    router = APIRouter(prefix=PREFIX, route_class=SafeRoute, dependencies=dependencies, tags=["sdapi"])
    _generation_routes(router, ctx)
    _state_routes(router, ctx)
    _model_routes(router, ctx)
    _list_routes(router, ctx)
    app.include_router(router)
    install_handlers(app)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)


def _generation_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.post("/txt2img", response_model=models.TextToImageResponse)
    def text2imageapi(req: models.StableDiffusionTxt2ImgProcessingAPI):
        return generation.txt2img(ctx, req)

    @router.post("/img2img", response_model=models.ImageToImageResponse)
    def img2imgapi(req: models.StableDiffusionImg2ImgProcessingAPI):
        return generation.img2img(ctx, req)

    @router.post("/extra-single-image", response_model=models.ExtrasSingleImageResponse)
    def extras_single_image_api(req: models.ExtrasSingleImageRequest):
        image = extras.check_extras(ctx, req)
        job = ctx.jobs.new_job("extras")
        return generation.run_guarded(ctx, job, lambda job: extras.extra_single_image(ctx, req, image, job))

    @router.post("/png-info", response_model=models.PNGInfoResponse)
    def pnginfoapi(req: models.PNGInfoRequest):
        return extras.png_info(ctx, req)


def _state_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.get("/progress", response_model=models.ProgressResponse)
    async def progressapi(skip_current_image: bool = False):
        progress = ctx.jobs.progress()
        image = progress.get("current_image")
        progress["current_image"] = None
        if image is not None and not skip_current_image:
            progress["current_image"] = imagecodec.encode_png(image, "")
        progress["current_task"] = None
        return progress

    @router.post("/interrupt")
    async def interruptapi():
        ctx.jobs.interrupt()
        return {}

    @router.post("/skip")
    async def skip():
        ctx.jobs.skip()
        return {}

    @router.get("/options")
    def get_config() -> dict[str, Any]:
        options = ctx.opts.as_dict()
        current = getattr(ctx.models, "current", None)
        if current is not None:
            options["sd_model_checkpoint"] = current.info.title
        return options

    @router.post("/options")
    def set_config(req: Annotated[dict[str, Any], Body()]):
        _set_options(ctx, req)
        return None

    @router.get("/cmd-flags")
    def get_cmd_flags() -> dict[str, Any]:
        return listings.cmd_flags(ctx)


def _set_options(ctx: AppContext, req: dict[str, Any]) -> None:
    """Validate everything first (nothing changes on a 422), then switch model/VAE, then save."""
    values = dict(req)
    for key, value in values.items():
        info = ctx.opts.registry.get(key)
        if info is None:
            raise field_error(key, f"unknown setting {key!r}")
        try:
            values[key] = info.validate(key, value)
        except OptionError as e:
            raise field_error(key, str(e)) from None
    if values.get("sd_model_checkpoint"):
        values["sd_model_checkpoint"] = validation.checkpoint_title(ctx, values["sd_model_checkpoint"],
                                                                    "sd_model_checkpoint")
    if "sd_vae" in values:
        validation.check_vae(ctx, values["sd_vae"], "sd_vae")
    if values.get("sd_model_checkpoint") or "sd_vae" in values:
        def switch(job):
            with ctx.models.lock:
                if values.get("sd_model_checkpoint"):
                    ctx.models.load(values["sd_model_checkpoint"])
                if "sd_vae" in values:
                    ctx.models.set_vae(values["sd_vae"])
        generation.run_guarded(ctx, ctx.jobs.new_job("load checkpoint"), switch)
    try:
        ctx.opts.update(values)
    except OptionError as e:  # a setting changed its rules in between: still the client's input
        raise ApiError(422, str(e)) from None
    ctx.opts.save()


def _model_routes(router: APIRouter, ctx: AppContext) -> None:
    def in_queue(name, fn):
        models = generation.require_models(ctx)

        def work(job):
            with models.lock:
                fn(models)
        generation.run_guarded(ctx, ctx.jobs.new_job(name), work)

    @router.post("/refresh-checkpoints")
    def refresh_checkpoints():
        generation.require_models(ctx).refresh()

    @router.post("/refresh-vae")
    def refresh_vae():
        catalog = getattr(generation.require_models(ctx), "vae_catalog", None)
        if catalog is not None:
            catalog.refresh()

    @router.post("/refresh-embeddings")
    def refresh_embeddings():
        """Re-read the embeddings folder for the loaded model's text encoder (without a model the
        files are read when one is loaded)."""
        db = ctx.services.get("embeddings")  # modules.embeddings.EmbeddingDatabase
        model = getattr(ctx.models, "sd_model", None)
        if db is None or model is None:
            return
        with ctx.models.lock:
            clip = model.cond_stage_model
            db.refresh(clip.width, clip.tokenizer)

    @router.post("/unload-checkpoint")
    def unloadapi():
        in_queue("unload checkpoint", lambda models: models.unload())

    @router.post("/reload-checkpoint")
    def reloadapi():
        in_queue("reload checkpoint", lambda models: models.reload() or generation.ensure_model_loaded(ctx))


def _list_routes(router: APIRouter, ctx: AppContext) -> None:
    router.add_api_route("/samplers", listings.samplers, methods=["GET"], response_model=list[models.SamplerItem])
    router.add_api_route("/schedulers", listings.schedulers, methods=["GET"],
                         response_model=list[models.SchedulerItem])
    router.add_api_route("/latent-upscale-modes", listings.latent_upscale_modes, methods=["GET"],
                         response_model=list[models.LatentUpscalerModeItem])
    router.add_api_route("/memory", listings.memory, methods=["GET"], response_model=models.MemoryResponse)
    for path, fn, model in (
            ("/upscalers", listings.upscalers, list[models.UpscalerItem]),
            ("/sd-models", listings.sd_models, list[models.SDModelItem]),
            ("/sd-vae", listings.sd_vaes, list[models.SDVaeItem]),
            ("/prompt-styles", listings.prompt_styles, list[models.PromptStyleItem]),
            ("/embeddings", listings.embeddings, models.EmbeddingsResponse),
            ("/loras", listings.loras, list[dict[str, Any]]),
            ("/scripts", scripts_api.scripts_list, models.ScriptsList),
            ("/script-info", scripts_api.script_info, list[models.ScriptInfo]),
            ("/extensions", listings.extensions, list[models.ExtensionItem])):
        router.add_api_route(path, _bound(fn, ctx), methods=["GET"], response_model=model)


def _bound(fn, ctx: AppContext):
    def endpoint():
        return fn(ctx)
    endpoint.__name__ = fn.__name__
    return endpoint
