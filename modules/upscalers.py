"""Image upscalers by A1111 name, for the Extras tab (`upscaler_1` / `upscaler_2` of
/sdapi/v1/extra-single-image) and hires fix: "None", "Lanczos", "Nearest" (PIL resampling) and
"SD x4" (the SD 2 x4 upscaler, modules.upscaler_x4; it needs the x4 checkpoint loaded) and "LDSR"
(latent diffusion super-resolution, modules.ldsr; attached as a service, ctx.services["upscalers"]).

    upscale(image, "Lanczos", 1024, 768)
    upscale(image, "SD x4", 2048, 2048, x4_model=model, x4_settings=X4Settings(...))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from PIL import Image

from modules.upscaler_x4 import X4Settings, upscale_x4


@dataclass(frozen=True)
class UpscalerInfo:
    name: str
    scale: Optional[int]  # the native factor of a model upscaler (None: any size in one resize)
    needs_model: bool = False


UPSCALERS = {u.name: u for u in (
    UpscalerInfo("None", None),
    UpscalerInfo("Lanczos", None),
    UpscalerInfo("Nearest", None),
    UpscalerInfo("SD x4", 4, needs_model=True),
    UpscalerInfo("LDSR", 4, needs_model=True),
)}
RESAMPLE = {"Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}


def upscaler_names() -> list[str]:
    return list(UPSCALERS)


def find_upscaler(name: Optional[str]) -> UpscalerInfo:
    info = UPSCALERS.get(name or "None")
    if info is None:
        raise ValueError(f"unknown upscaler {name!r}: use one of {', '.join(UPSCALERS)}")
    return info


def target_size(width: int, height: int, scale: float = 0.0, to_width: int = 0, to_height: int = 0) -> tuple:
    """(width, height) to upscale to: an explicit size, else the image size times scale (A1111's
    upscaling_resize / upscaling_resize_w/h)."""
    if to_width > 0 and to_height > 0:
        return int(to_width), int(to_height)
    if scale <= 0:
        raise ValueError(f"upscale factor must be positive, got {scale}")
    return max(1, round(width * scale)), max(1, round(height * scale))


def upscale(image: Image.Image, name: Optional[str], width: int, height: int, *, x4_model=None,
            x4_settings: Optional[X4Settings] = None) -> Image.Image:
    """image upscaled by the named upscaler to width x height ("None": the image unchanged, as A1111).

    Model upscalers run at their native factor until the image is at least the target size (A1111
    runs them up to 3 times), then Lanczos adjusts to the exact size."""
    info = find_upscaler(name)
    if info.name == "None":
        return image
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if info.name in RESAMPLE:
        return image.resize((int(width), int(height)), RESAMPLE[info.name])
    if info.name != "SD x4":  # other model upscalers run as services (upscale_with)
        raise ValueError(f"'{info.name}' needs its model: it runs through the app's upscaler services "
                         "(Extras, hires fix); pick Lanczos / Nearest here")
    if x4_model is None:
        raise ValueError("'SD x4' needs the SD 2 x4 upscaler checkpoint (x4-upscaler-ema.safetensors with "
                         "x4-upscaling.yaml) in models/Stable-diffusion; put it there, or pick Lanczos / Nearest")
    for _ in range(3):
        if image.width >= width and image.height >= height:
            break
        image = upscale_x4(x4_model, image, x4_settings).image
    return image if image.size == (width, height) else image.resize((int(width), int(height)), Image.LANCZOS)


def upscale_with(attached: dict, image: Image.Image, name: Optional[str], width: int, height: int,
                 **kwargs) -> Image.Image:
    """Upscale by `name` from the attached model upscalers (ctx.services["upscalers"], e.g. "SD x4";
    kwargs such as prompt go to them) or the built-in ones, to exactly width x height."""
    if name not in attached:  # a model upscaler that is not attached raises ValueError saying what to do
        return upscale(image, name, width, height)
    result = attached[name](image, width, height, **kwargs)
    return result if result.size == (width, height) else result.resize((width, height), Image.LANCZOS)


def as_processing_upscalers(x4_model=None, x4_settings: Optional[X4Settings] = None) -> dict:
    """{name: fn(image, width, height)} for ProcessingEnv.upscalers (hires fix); SD x4 only with a model."""
    if x4_model is None:
        return {}
    return {"SD x4": lambda im, w, h: upscale(im, "SD x4", w, h, x4_model=x4_model, x4_settings=x4_settings)}
