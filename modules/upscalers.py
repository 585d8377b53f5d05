"""The upscaler table: every image upscaler by A1111 name, one table for Extras
(`upscaler_1` / `upscaler_2` of /sdapi/v1/extra-single-image), hires fix and scripts.

Built in: "None" (the image unchanged, as A1111), "Lanczos" and "Nearest" (PIL resampling). Model
upscalers are registered by the services that own their weights ("SD x4": modules.x4_service).
Hires fix's latent upscale modes are not image upscalers: modules.processing.hires keeps those.

    table = UpscalerTable()
    table.register(Upscaler("SD x4", scale=4, run=x4_service))   # run(image, **kw) -> image * 4
    table.upscale(image, "SD x4", 2048, 2048)                     # exactly 2048x2048
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from PIL import Image

RESAMPLE = {"Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}
MODEL_PASSES = 3  # a model upscaler runs at most this often to reach the size (A1111's rule)


@dataclass(frozen=True)
class Upscaler:
    """One entry. `run(image, **kw)` upscales once by the model's native `scale`; None for the
    built-in resampling entries. `model_name`/`model_path` are what /upscalers lists."""

    name: str
    scale: Optional[int] = None  # the native factor of a model upscaler (None: any size in one resize)
    run: Optional[Callable[..., Image.Image]] = None
    model_name: Optional[str] = None
    model_path: Optional[str] = None
    any_size: bool = False  # run(image, width=, height=, **kw) reaches any size in one call (LDSR pre-resizes)
    service: Any = None  # the object behind `run` (its settings, what it has loaded), for the front ends

    @property
    def needs_model(self) -> bool:
        return self.run is not None


BUILTIN = (Upscaler("None"), Upscaler("Lanczos"), Upscaler("Nearest"))


def target_size(width: int, height: int, scale: float = 0.0, to_width: int = 0, to_height: int = 0) -> tuple:
    """(width, height) to upscale to: an explicit size, else the image size times scale (A1111's
    upscaling_resize / upscaling_resize_w/h)."""
    if to_width > 0 and to_height > 0:
        return int(to_width), int(to_height)
    if scale <= 0:
        raise ValueError(f"upscale factor must be positive, got {scale}")
    return max(1, round(width * scale)), max(1, round(height * scale))


class UpscalerTable:
    """The built-in entries, then model upscalers in the order they were registered."""

    def __init__(self, models: tuple[Upscaler, ...] | list[Upscaler] = ()):
        self._entries: dict[str, Upscaler] = {u.name: u for u in BUILTIN}
        for upscaler in models:
            self.register(upscaler)

    def register(self, upscaler: Upscaler) -> None:
        if upscaler.name in RESAMPLE or upscaler.name == "None":
            raise ValueError(f"{upscaler.name!r} is a built-in upscaler and cannot be replaced")
        self._entries[upscaler.name] = upscaler

    def unregister(self, name: str) -> None:
        """Remove a model entry (its file went away on refresh); built-in entries stay."""
        if name not in RESAMPLE and name != "None":
            self._entries.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Upscaler]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: Optional[str]) -> Upscaler:
        info = self._entries.get(name or "None")
        if info is None:
            raise ValueError(f"unknown upscaler {name!r}: use one of {', '.join(self._entries)}")
        return info

    def upscale(self, image: Image.Image, name: Optional[str], width: int, height: int, **kwargs) -> Image.Image:
        """image upscaled by the named upscaler to exactly width x height ("None": unchanged).

        A model upscaler runs at its native factor until the image covers the target size (at most
        MODEL_PASSES times), then Lanczos adjusts to the exact size; kwargs (e.g. prompt) go to it."""
        info = self.get(name)
        if info.name == "None":
            return image
        if width < 1 or height < 1:
            raise ValueError(f"target size must be positive, got {width}x{height}")
        if info.run is None:
            return image.resize((int(width), int(height)), RESAMPLE[info.name])
        if info.any_size:
            image = info.run(image, width=int(width), height=int(height), **kwargs)
        for _ in range(0 if info.any_size else MODEL_PASSES):
            if image.width >= width and image.height >= height:
                break
            image = info.run(image, **kwargs)
        return image if image.size == (width, height) else image.resize((int(width), int(height)), Image.LANCZOS)
