"""POST png-info (read the generation parameters back) and extra-single-image (upscale one image)."""
from __future__ import annotations

from typing import Any

from PIL import Image

from modules.context import AppContext
from webui.api import imagecodec, listings
from webui.api.errors import field_error
from webui.api.models import ExtrasSingleImageRequest, PNGInfoRequest


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def png_info(ctx: AppContext, req: PNGInfoRequest) -> dict:
    if not req.image.strip():
        return {"info": "", "items": {}, "parameters": {}}
    image = imagecodec.decode_image(req.image, "image", int(ctx.opts.img_max_size))
    from modules import image_metadata, infotext

    geninfo, items = image_metadata.read_info_from_image(image)
    geninfo = geninfo or ""
    parameters = infotext.parse_generation_parameters(geninfo) if geninfo else {}
    scripts = ctx.services.get("scripts")  # extensions' on_infotext_pasted may edit the parameters
    if scripts is not None and hasattr(scripts, "infotext_pasted"):
        scripts.infotext_pasted(geninfo, parameters)
    return {"info": geninfo, "items": _json_safe(items or {}), "parameters": _json_safe(parameters)}


def _target_size(req: ExtrasSingleImageRequest, image: Image.Image) -> tuple[int, int]:
    if req.resize_mode == 1:
        return req.upscaling_resize_w, req.upscaling_resize_h
    return round(image.width * req.upscaling_resize), round(image.height * req.upscaling_resize)


def _upscale(ctx: AppContext, name: str, image: Image.Image, width: int, height: int,
             crop: bool) -> Image.Image:
    """Upscale with `name` to cover (width, height) keeping the aspect ratio, then centre-crop when
    asked (A1111's "crop to fit"); without crop the image is stretched to the size."""
    from modules import upscalers

    if crop:
        scale = max(width / image.width, height / image.height)
        cover = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    else:
        cover = (width, height)
    # a model upscaler that is not attached raises ValueError with what to do: a 422
    result = upscalers.upscale_with(ctx.services.get("upscalers") or {}, image, name, cover[0], cover[1])
    if crop and result.size != (width, height):
        left, top = (result.width - width) // 2, (result.height - height) // 2
        result = result.crop((left, top, left + width, top + height))
    return result


def _check_upscaler(ctx: AppContext, field: str, name: str) -> None:
    allowed = listings.image_upscaler_names(ctx)
    if name not in allowed:
        raise field_error(field, f"unknown upscaler {name!r}: use one of {', '.join(allowed)}")


def check_extras(ctx: AppContext, req: ExtrasSingleImageRequest) -> Image.Image:
    if req.gfpgan_visibility > 0 or req.codeformer_visibility > 0:
        field = "gfpgan_visibility" if req.gfpgan_visibility > 0 else "codeformer_visibility"
        raise field_error(field, "face restoration (GFPGAN/CodeFormer) is not available in this web UI: use 0")
    _check_upscaler(ctx, "upscaler_1", req.upscaler_1)
    _check_upscaler(ctx, "upscaler_2", req.upscaler_2)
    limit = int(ctx.opts.img_max_size)
    image = imagecodec.decode_image(req.image, "image", limit)
    width, height = _target_size(req, image)
    if max(width, height) > limit or min(width, height) < 1:
        raise field_error("upscaling_resize", f"the result would be {width}x{height} pixels; sides must be "
                                              f"1 to {limit} (setting img_max_size)")
    return image


def extra_single_image(ctx: AppContext, req: ExtrasSingleImageRequest, image: Image.Image, job) -> dict:
    """Runs inside a job of the queue (a model upscaler may use the device)."""
    geninfo = image.info.get("parameters")
    image = image.convert("RGB")
    width, height = _target_size(req, image)
    crop = req.resize_mode == 1 and req.upscaling_crop
    info: dict[str, Any] = {}
    if req.upscaler_1 != "None":
        result = _upscale(ctx, req.upscaler_1, image, width, height, crop)
        if req.upscaler_2 != "None" and req.extras_upscaler_2_visibility > 0:
            second = _upscale(ctx, req.upscaler_2, image, width, height, crop)
            result = Image.blend(result, second, req.extras_upscaler_2_visibility)
            info["Postprocess upscaler 2"] = req.upscaler_2
        if req.resize_mode == 1:
            info["Postprocess upscale to"] = f"{width}x{height}"
        else:
            info["Postprocess upscale by"] = req.upscaling_resize
        info["Postprocess upscaler"] = req.upscaler_1
        image = result
    text = ", ".join(f"{k}: {v}" for k, v in info.items())
    infotext = "\n".join(t for t in (geninfo, text) if t) or None
    encoded = imagecodec.encode_png(image, infotext) if req.show_extras_results else None
    return {"html_info": f"<p>{text}</p>" if text else "", "image": encoded}
