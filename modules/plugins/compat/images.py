"""A1111's `modules.images` names that modules/images.py (the engine's saving and grids) does not
define itself: resize_image with an upscaler, flatten, the resampling constants."""
from __future__ import annotations

import math

from PIL import Image

from modules.script_callbacks import current_scope

LANCZOS = Image.LANCZOS
NEAREST = Image.NEAREST

def resize_image(resize_mode: int, im: Image.Image, width: int, height: int, upscaler_name: str | None = None,
                 force_RGBA: bool = False) -> Image.Image:  # noqa: N803 - A1111's name
    """A1111's resize modes (0 just resize, 1 crop and resize, 2 resize and fill); with an
    upscaler name, an image that must grow is first upscaled by that upscaler."""
    from modules.processing.img2img import resize_image as engine_resize
    if not force_RGBA and im.mode != "RGB" and im.mode != "RGBA":
        im = im.convert("RGB")
    if upscaler_name and upscaler_name not in ("None", "Lanczos", "Nearest"):
        table = current_scope().ctx.services.upscalers
        scale = max(width / im.width, height / im.height)
        if scale > 1 and upscaler_name in table:
            im = table.upscale(im, upscaler_name, math.ceil(im.width * scale), math.ceil(im.height * scale))
    if resize_mode not in (0, 1, 2):
        resize_mode = 0  # A1111's mode 3 (latent upscale) resizes the image like mode 0
    return engine_resize(resize_mode, im, width, height)


def flatten(img: Image.Image, bgcolor: str) -> Image.Image:
    """An RGBA image on a solid background, as RGB."""
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def attribute(name: str):
    if name in globals() and not name.startswith("_") and name not in ("attribute", "annotations"):
        return globals()[name]
    raise AttributeError(f"module 'modules.images' has no attribute {name!r} in this web UI "
                         "(README: Extensions, A1111's module surface)")
