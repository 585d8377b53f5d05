"""Checks of generation requests that need the settings or the engine's tables.

Everything here runs before a job is queued, so a bad request is answered at once (422 naming the
field) instead of waiting for its turn and failing there.
"""
from __future__ import annotations

from typing import Any

from modules.context import AppContext
from modules.options import OptionError
from webui.api import listings
from webui.api.errors import field_error
from webui.api.models import StableDiffusionTxt2ImgProcessingAPI, _Generation


def sampler_and_scheduler(sampler: str | None, scheduler: str | None, sampler_field: str = "sampler_name",
                          scheduler_field: str = "scheduler") -> tuple[str, str]:
    """A1111's matching: case-insensitive names and aliases, "automatic", and old combined names
    such as "DPM++ 2M Karras". Returns (sampler name, schedule label)."""
    from modules.sampling.samplers import resolve_sampler_and_scheduler
    from modules.sampling.schedules import find_scheduler

    try:
        find_scheduler(scheduler)
    except ValueError as e:
        raise field_error(scheduler_field, str(e)) from None
    try:
        info, found = resolve_sampler_and_scheduler(sampler, scheduler)
    except ValueError as e:
        raise field_error(sampler_field, str(e)) from None
    return info.name, found.label


def check_size(ctx: AppContext, req: _Generation) -> None:
    limit = int(ctx.opts.img_max_size)
    for name in ("width", "height"):
        if getattr(req, name) > limit:
            raise field_error(name, f"{getattr(req, name)} is larger than {limit}, the largest side allowed "
                                    "(setting img_max_size)")
    if req.n_iter > int(ctx.opts.max_batch_count):
        raise field_error("n_iter", f"{req.n_iter} batches is more than {ctx.opts.max_batch_count} "
                                    "(setting max_batch_count)")


def check_hires(ctx: AppContext, req: StableDiffusionTxt2ImgProcessingAPI) -> None:
    if not req.enable_hr:
        return
    if req.hr_upscaler is not None and req.hr_upscaler not in listings.upscaler_names(ctx):
        known = ", ".join(listings.upscaler_names(ctx))
        raise field_error("hr_upscaler", f"unknown upscaler {req.hr_upscaler!r}: use one of {known}")
    limit = int(ctx.opts.img_max_size)
    target_w = req.hr_resize_x or (int(req.width * req.hr_scale) if not req.hr_resize_y else 0)
    target_h = req.hr_resize_y or (int(req.height * req.hr_scale) if not req.hr_resize_x else 0)
    if max(target_w, target_h) > limit:
        field = "hr_scale" if not (req.hr_resize_x or req.hr_resize_y) else "hr_resize_x"
        raise field_error(field, f"the hires fix would make {target_w}x{target_h} images, larger than {limit} "
                                 "(setting img_max_size)")
    if req.hr_checkpoint_name not in (None, "", "Use same checkpoint"):
        raise field_error("hr_checkpoint_name", "a separate hires checkpoint is not supported: leave it empty")


def check_unsupported(req: _Generation) -> None:
    """Fields A1111 has that this engine does not do: refused clearly rather than ignored."""
    if req.restore_faces:
        raise field_error("restore_faces", "face restoration is not available in this web UI: set it to false")
    if req.firstpass_image:
        raise field_error("firstpass_image", "a hires fix from a given first-pass image is not supported: "
                                             "use img2img with that image instead")
    if req.refiner_checkpoint not in (None, "", "None"):
        raise field_error("refiner_checkpoint", "refiner checkpoints (SDXL) are not supported: leave it empty")


def check_override_settings(ctx: AppContext, values: dict[str, Any] | None) -> dict[str, Any]:
    """Every key must be a known setting with a valid value; the checkpoint and VAE must exist."""
    values = dict(values or {})
    for key, value in values.items():
        field = ("override_settings", key)
        info = ctx.opts.registry.get(key)
        if info is None:
            raise field_error(field, f"unknown setting {key!r}")
        try:
            info.validate(key, value)
        except OptionError as e:
            raise field_error(field, str(e)) from None
    if values.get("sd_model_checkpoint"):
        values["sd_model_checkpoint"] = checkpoint_title(ctx, values["sd_model_checkpoint"],
                                                         ("override_settings", "sd_model_checkpoint"))
    if "sd_vae" in values:
        check_vae(ctx, values["sd_vae"], ("override_settings", "sd_vae"))
    return values


def checkpoint_title(ctx: AppContext, search: str, field: str | tuple) -> str:
    """The catalog title of a checkpoint given by title, name or hash; 422 naming `field` if none."""
    if ctx.models is None:
        raise field_error(field, "no checkpoint loader is attached to this server")
    info = ctx.models.catalog.get(str(search))
    if info is None:
        known = ", ".join(ctx.models.catalog.titles()[:8]) or "none (put .safetensors files in models/Stable-diffusion)"
        raise field_error(field, f"model {search!r} not found; known checkpoints: {known}")
    return info.title


def check_vae(ctx: AppContext, name: str, field: str | tuple) -> None:
    catalog = getattr(ctx.models, "vae_catalog", None)
    names = catalog.names() if catalog is not None else ["Automatic", "None"]
    if name not in names and (catalog is None or catalog.get(name) is None):
        raise field_error(field, f"VAE {name!r} not found; choose one of {', '.join(names)}")
