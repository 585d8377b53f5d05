"""txt2img / img2img / extra-single-image / depth2img requests -> the engine's entry point -> A1111's responses.

Only parsing and rendering live here: the pydantic model's fields become a GenerationRequest (images
decoded from base64, A1111's API-only switches such as save_images translated), modules.generation
checks and runs it in the shared queue (the same FIFO the web UI uses), and its result or its
RequestError becomes A1111's response or a 4xx/5xx naming the field.
"""
from __future__ import annotations

import html
import json
from typing import Any

from modules.context import AppContext
from modules.errors import RequestError
from modules.generation import GenerationRequest, GenerationResult, submit
from modules.processing.infotext import VERSION
from webui.api import imagecodec
from webui.api.errors import ApiError, field_error
from webui.api.models import (
    Depth2ImgRequest,
    ExtrasSingleImageRequest,
    StableDiffusionImg2ImgProcessingAPI,
    StableDiffusionTxt2ImgProcessingAPI,
)

# request fields that steer the API itself rather than the job
API_ONLY = {"sampler_index", "script_name", "script_args", "send_images", "save_images", "alwayson_scripts",
            "infotext", "force_task_id", "init_images", "mask", "latent_mask", "override_settings",
            "override_settings_restore_afterwards", "include_init_images_echo"}


def api_error(e: RequestError) -> Exception:
    """A RequestError as the API answers it: a 422 naming the field in FastAPI's shape, else its status."""
    if e.field is not None and e.status == 422:
        return field_error(e.field, e.message)
    return ApiError(e.status, e.message)


def run(ctx: AppContext, request: GenerationRequest) -> GenerationResult:
    try:
        return submit(ctx, request)
    except RequestError as e:
        raise api_error(e) from None


def _generation_request(task: str, req, params: dict[str, Any]) -> GenerationRequest:
    given = {k: v for k, v in req.model_dump().items() if k not in API_ONLY}
    if req.infotext:  # the infotext fills what the client did not set: leave those to it
        given = {k: v for k, v in given.items() if k in req.model_fields_set}
    if not given.get("sampler_name") and (not req.infotext or "sampler_index" in req.model_fields_set):
        given["sampler_name"] = req.sampler_index  # A1111's API: sampler_index when sampler_name is not given
    # save_images=false (the default) keeps API jobs out of the outputs folders, as in A1111
    given.update(do_not_save_samples=not req.save_images, do_not_save_grid=not req.save_images, **params)
    return GenerationRequest(task, given, override_settings=dict(req.override_settings or {}),
                             restore_settings=req.override_settings_restore_afterwards,
                             script_name=req.script_name, script_args=list(req.script_args or []),
                             alwayson_scripts=dict(req.alwayson_scripts or {}), infotext=req.infotext)


def txt2img(ctx: AppContext, req: StableDiffusionTxt2ImgProcessingAPI) -> dict:
    result = run(ctx, _generation_request("txt2img", req, {}))
    return response(req, result, req.model_dump())


def img2img(ctx: AppContext, req: StableDiffusionImg2ImgProcessingAPI) -> dict:
    if not req.init_images:
        raise field_error("init_images", "img2img needs at least one init image (base64)")
    limit = int(ctx.opts.img_max_size)
    params: dict[str, Any] = {"init_images": [imagecodec.decode_image(text, ("init_images", i), limit)
                                              for i, text in enumerate(req.init_images)]}
    for name in ("mask", "latent_mask"):
        if getattr(req, name):
            params[name] = imagecodec.decode_image(getattr(req, name), name, limit)
    result = run(ctx, _generation_request("img2img", req, params))
    echo = req.model_dump()
    if not req.include_init_images:
        echo["init_images"], echo["mask"] = None, None
    return response(req, result, echo)


def extra_single_image(ctx: AppContext, req: ExtrasSingleImageRequest) -> dict:
    image = imagecodec.decode_image(req.image, "image", int(ctx.opts.img_max_size))
    params = {**req.model_dump(exclude={"image", "show_extras_results"}), "image": image,
              "do_not_save_samples": True}
    result = run(ctx, GenerationRequest("extras", params))
    encoded = imagecodec.encode_png(result.images[0], result.infotext) if req.show_extras_results else None
    return {"html_info": f"<p>{html.escape(result.comments)}</p>" if result.comments else "", "image": encoded}


def depth2img(ctx: AppContext, req: Depth2ImgRequest) -> dict:
    """The depth2img tab over HTTP: the engine picks the depth model (the loaded one, else the catalog's,
    a user's before the shipped demo) and answers the pictures and the depth map it used."""
    if not req.init_images:
        raise field_error("init_images", "depth2img needs a picture (base64) in init_images")
    limit = int(ctx.opts.img_max_size)
    params = {**req.model_dump(exclude={"init_images", "depth_map", "save_images"}),
              "image": imagecodec.decode_image(req.init_images[0], ("init_images", 0), limit),
              "depth_map": imagecodec.decode_image(req.depth_map, "depth_map", limit) if req.depth_map else None,
              "do_not_save_samples": not req.save_images}
    result = run(ctx, GenerationRequest("depth2img", params))
    return {"images": [imagecodec.encode_png(im, text) for im, text in zip(result.images, result.infotexts,
                                                                            strict=True)],
            "depth_map": imagecodec.encode_png(result.extra_images["depth"]), "info": result.info}


def info_json(result: GenerationResult) -> str:
    info = json.loads(result.info)
    info.setdefault("version", VERSION)
    return json.dumps(info, default=str)


def response(req, result: GenerationResult, parameters: dict) -> dict:
    images = []
    if req.send_images:
        for i, image in enumerate(result.images):
            text = image.info.get("parameters") or (result.infotexts[i] if i < len(result.infotexts) else None)
            images.append(imagecodec.encode_png(image, text))
    return {"images": images, "parameters": parameters, "info": info_json(result)}
