"""POST png-info: read the generation parameters back from an image."""
from __future__ import annotations

from typing import Any

from modules import image_metadata, infotext
from modules.context import AppContext
from webui.api import imagecodec
from webui.api.models import PNGInfoRequest


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
    geninfo, items = image_metadata.read_info_from_image(image)
    geninfo = geninfo or ""
    parameters = infotext.parse_generation_parameters(geninfo) if geninfo else {}
    scripts = ctx.services.scripts  # extensions' on_infotext_pasted may edit the parameters
    if scripts is not None and hasattr(scripts, "infotext_pasted"):
        scripts.infotext_pasted(geninfo, parameters)
    return {"info": geninfo, "items": _json_safe(items or {}), "parameters": _json_safe(parameters)}
