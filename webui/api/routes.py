"""The /sdapi/v1 routes (A1111-compatible). `install(app, ctx)` is called by webui.server with --api.

Generation and model changes are plain `def` routes: FastAPI runs them in its worker threads, where
they wait for their turn in `ctx.jobs` and run. Progress, interrupt and skip are `async`: they answer
from the event loop at once, however many generation requests are waiting.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules import cmd_args, request_settings, startup
from modules.context import AppContext
from modules.errors import RequestError
from webui.api import a1111_routes, extras, generation, imagecodec, listings, models, scripts_api, tool_routes
from webui.api.auth import BasicAuthMiddleware
from webui.api.errors import ApiError, SafeRoute, http_error_handler, install_handlers

log = logging.getLogger("sdwebui.api")
PREFIX = "/sdapi/v1"


def install(app: FastAPI, ctx: AppContext) -> None:
    """Add the API routes (behind HTTP Basic when --api-auth is set) and its error handlers."""
    if getattr(ctx.args, "api_auth", None):  # checked before routing and body parsing
        app.add_middleware(BasicAuthMiddleware, pairs=cmd_args.parse_credentials(ctx.args.api_auth, "--api-auth"))
    router = APIRouter(prefix=PREFIX, route_class=SafeRoute, tags=["sdapi"])
    _generation_routes(router, ctx)
    _state_routes(router, ctx)
    _model_routes(router, ctx)
    _list_routes(router, ctx)
    tool_routes.install(router, ctx)
    a1111_routes.install(router, ctx)
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
        return generation.extra_single_image(ctx, req)

    @router.post("/depth2img", response_model=models.Depth2ImgResponse)
    def depth2imgapi(req: models.Depth2ImgRequest):
        return generation.depth2img(ctx, req)

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
        options["sd_model_checkpoint"] = request_settings.current_value(ctx, "sd_model_checkpoint")
        return options

    @router.post("/options")
    def set_config(req: Annotated[dict[str, Any], Body()]):
        _set_options(ctx, req)
        return None

    @router.get("/cmd-flags")
    def get_cmd_flags() -> dict[str, Any]:
        return listings.cmd_flags(ctx)


def _require_models(ctx: AppContext):
    if ctx.models is None:
        raise ApiError(503, "no checkpoint loader is attached to this server")
    return ctx.models


def _in_queue(ctx: AppContext, name: str, fn) -> None:
    """A model change waits for its turn like a job, and holds the model lock while it runs."""
    models = _require_models(ctx)

    def work(job):
        with models.lock:
            fn(models)
    try:
        ctx.jobs.run(ctx.jobs.new_job(name), work)
    except startup.NoCheckpoint as e:
        raise ApiError(503, f"{e} (or POST /sdapi/v1/refresh-checkpoints)") from None
    except ValueError as e:
        raise ApiError(422, str(e)) from None


def _set_options(ctx: AppContext, req: dict[str, Any]) -> None:
    try:
        request_settings.apply_settings(ctx, req)
    except RequestError as e:
        raise generation.api_error(e) from None


def _model_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.post("/refresh-checkpoints")
    def refresh_checkpoints():
        _require_models(ctx).refresh()

    @router.post("/refresh-vae")
    def refresh_vae():
        catalog = getattr(_require_models(ctx), "vae_catalog", None)
        if catalog is not None:
            catalog.refresh()

    @router.post("/refresh-embeddings")
    def refresh_embeddings():
        """Re-read the embeddings folder for the loaded model's text encoder (without a model the
        files are read when one is loaded)."""
        db = ctx.services.embeddings  # modules.embeddings.EmbeddingDatabase
        model = getattr(ctx.models, "sd_model", None)
        if db is None or model is None:
            return
        with ctx.models.lock:
            clip = model.cond_stage_model
            db.refresh(clip.width, clip.tokenizer)

    @router.post("/unload-checkpoint")
    def unloadapi():
        _in_queue(ctx, "unload checkpoint", lambda models: models.unload())

    @router.post("/reload-checkpoint")
    def reloadapi():
        _in_queue(ctx, "reload checkpoint", lambda models: models.reload() or startup.current_model(ctx))


def _list_routes(router: APIRouter, ctx: AppContext) -> None:
    router.add_api_route("/samplers", listings.samplers, methods=["GET"], response_model=list[models.SamplerItem])
    router.add_api_route("/schedulers", listings.schedulers, methods=["GET"],
                         response_model=list[models.SchedulerItem])
    router.add_api_route("/latent-upscale-modes", listings.latent_upscale_modes, methods=["GET"],
                         response_model=list[models.LatentUpscalerModeItem])
    router.add_api_route("/memory", _bound(listings.memory, ctx), methods=["GET"], response_model=models.MemoryResponse)
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
