"""The rest of A1111 1.10's /sdapi/v1 routes, in its shapes (plus Forge's /sd-modules, which
clients probe to tell the two apart).

(/realesrgan-models, /face-restorers, /create/embedding and /train/embedding are tool_routes'.)
A route whose feature this app does not have answers as A1111 does when nothing is installed (an
empty list), or a 400 that names what is missing; never 404 or 500:
- lists: /hypernetworks -> [] (none here); /sd-modules -> the VAE files (Forge's shape);
- /extra-batch-images: each image through the Extras task, as /extra-single-image;
- /interrogate: modules.interrogate (CLIP files needed; see its docstring);
- /create/hypernetwork, /train/hypernetwork: 400 naming what is missing;
- /refresh-loras (A1111's Lora extension's route);
- /server-kill, /server-restart (501: nothing here restarts it), /server-stop only with
  --api-server-stop, as A1111.
"""
from __future__ import annotations

import html
import os
import threading
from typing import Annotated, Any, Optional

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from modules import interrogate
from modules.context import AppContext
from modules.generation import GenerationRequest
from webui.api import imagecodec
from webui.api.errors import ApiError
from webui.api.generation import run
from webui.api.models import ExtrasSingleImageRequest

HYPERNETWORKS_MISSING = ("hypernetworks are not supported by this app (A1111 deprecated them): "
                         "use a LoRA in models/Lora instead")


class HypernetworkItem(BaseModel):
    name: str
    path: Optional[str] = None


class SDModuleItem(BaseModel):
    model_name: str
    filename: str


class FileData(BaseModel):
    data: str = Field(description="base64 image")
    name: str = ""


class ExtrasBatchImagesRequest(ExtrasSingleImageRequest):
    imageList: list[FileData] = Field(default_factory=list)  # noqa: N815 - A1111's field name


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class InterrogateRequest(BaseModel):
    image: str = ""
    model: str = "clip"


class InterrogateResponse(BaseModel):
    caption: Optional[str] = None


class CreateResponse(BaseModel):
    info: str


class TrainResponse(BaseModel):
    info: str


def install(router: APIRouter, ctx: AppContext) -> None:
    _lists(router, ctx)
    _actions(router, ctx)
    _training_routes(router, ctx)
    _refresh_routes(router, ctx)
    if getattr(ctx.args, "api_server_stop", False):
        _server_routes(router, ctx)


def _lists(router: APIRouter, ctx: AppContext) -> None:
    @router.get("/hypernetworks", response_model=list[HypernetworkItem])
    def get_hypernetworks():
        return []

    @router.get("/sd-modules", response_model=list[SDModuleItem])
    def get_sd_modules():
        catalog = getattr(ctx.models, "vae_catalog", None)
        if catalog is None:
            return []
        items = ((name, catalog.get(name)) for name in catalog.names()[2:])  # after Automatic, None
        return [{"model_name": name, "filename": info.filename} for name, info in items if info is not None]


def _actions(router: APIRouter, ctx: AppContext) -> None:
    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    def extras_batch_images(req: ExtrasBatchImagesRequest):
        limit = int(ctx.opts.img_max_size)
        shared = req.model_dump(exclude={"image", "imageList", "show_extras_results"})
        images, notes = [], []
        for i, item in enumerate(req.imageList):
            image = imagecodec.decode_image(item.data, ("imageList", i, "data"), limit)
            result = run(ctx, GenerationRequest("extras", {**shared, "image": image, "do_not_save_samples": True}))
            images.append(imagecodec.encode_png(result.images[0], result.infotext))
            if result.comments:
                notes.append(result.comments)
        info = "".join(f"<p>{html.escape(n)}</p>" for n in dict.fromkeys(notes))
        return {"html_info": info, "images": images if req.show_extras_results else []}

    @router.post("/interrogate", response_model=InterrogateResponse)
    def interrogate_image(req: InterrogateRequest):
        if not req.image:
            raise ApiError(422, "image: send the picture to describe (base64)")
        image = imagecodec.decode_image(req.image, "image", int(ctx.opts.img_max_size))
        try:
            caption = ctx.jobs.run(ctx.jobs.new_job("interrogate"),
                                   lambda job: interrogate.interrogate(ctx.paths.models_dir, image, req.model))
        except interrogate.InterrogatorMissing as e:
            raise ApiError(400, str(e)) from None
        return {"caption": caption}



def _training_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.post("/create/hypernetwork", response_model=CreateResponse)
    def create_hypernetwork(args: Annotated[dict[str, Any], Body()]):
        raise ApiError(400, HYPERNETWORKS_MISSING)

    @router.post("/train/hypernetwork", response_model=TrainResponse)
    def train_hypernetwork(args: Annotated[dict[str, Any], Body()]):
        raise ApiError(400, HYPERNETWORKS_MISSING)


def _refresh_routes(router: APIRouter, ctx: AppContext) -> None:
    @router.post("/refresh-loras")
    def refresh_loras():
        db = ctx.services.lora
        if db is not None:
            db.refresh()


def _server_routes(router: APIRouter, ctx: AppContext) -> None:
    """A1111's --api-server-stop routes. kill: the process exits (right after this answer is sent);
    restart: 501, A1111's answer when no launcher that restarts it is around (none is, here);
    stop: the server stops serving (webui.server.start puts `stop_server` on app.state)."""

    @router.post("/server-kill")
    def kill_webui():
        threading.Timer(0.2, os._exit, (0,)).start()
        return {}

    @router.post("/server-restart")
    def restart_webui():
        return Response(status_code=501)

    @router.post("/server-stop")
    def stop_webui(request: Request):
        stop = getattr(request.app.state, "stop_server", None)
        if stop is not None:
            stop()
        return Response("Stopping.")
