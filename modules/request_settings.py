"""Settings changed by a request (POST /options, override_settings, the Settings tab, quick settings):
checked the same way wherever they come from, before anything changes.

Beyond the registry's own rules (type, range, choices, finite numbers, valid text) a request may
not: name a setting that does not exist, a checkpoint or VAE that is not in the catalog, or an
output folder outside the data dir (the server would write wherever a client says: /etc, another
user's home). `--allow-any-output-dir` lifts the folder rule for a trusted single-user machine; a
config.json edited by the machine's owner is trusted and never checked here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.errors import RequestError
from modules.options import OptionError


def current_value(ctx, key: str):
    """A setting's value; for the checkpoint, the loaded model's title (the setting may be unset while
    the default checkpoint is loaded), so the API and the Settings tab report the same."""
    current = ctx.models.current if key == "sd_model_checkpoint" and ctx.models is not None else None
    return current.info.title if current is not None else ctx.opts.get(key)


def check_folder(ctx, key: str, value: str, field) -> str:
    """A folder setting from a request must stay inside the data dir (relative paths are under it)."""
    if not value or getattr(ctx.args, "allow_any_output_dir", False):
        return value
    data_dir = Path(ctx.paths.data_dir).resolve()
    target = (data_dir / value).resolve()
    if target != data_dir and data_dir not in target.parents:
        raise RequestError(f"setting {key!r} points outside the data dir ({data_dir}): use a folder inside it, "
                           "or start the server with --allow-any-output-dir", field)
    return value


def checkpoint_title(ctx, search: str, field) -> str:
    """The catalog title of a checkpoint given by title, name or hash."""
    if ctx.models is None:
        raise RequestError("no checkpoint loader is attached to this server", field, status=503)
    info = ctx.models.catalog.get(str(search))
    if info is None:
        known = ", ".join(ctx.models.catalog.titles()[:8]) or "none (put .safetensors files in models/Stable-diffusion)"
        raise RequestError(f"model {search!r} not found; known checkpoints: {known}", field)
    return info.title


def check_vae(ctx, name: str, field) -> str:
    catalog = getattr(ctx.models, "vae_catalog", None)
    names = ["Automatic", "None", *(catalog.names() if catalog is not None else [])]
    if name not in names and (catalog is None or catalog.get(name) is None):
        raise RequestError(f"VAE {name!r} not found; choose one of {', '.join(dict.fromkeys(names))}", field)
    return name


def validate_settings(ctx, values: dict[str, Any] | None, prefix: tuple = ()) -> dict[str, Any]:
    """Every key a known setting with a valid value -> the converted values; RequestError naming the
    first bad key (as `prefix + (key,)`) otherwise."""
    out = {}
    for key, value in dict(values or {}).items():
        field = (*prefix, key) if prefix else key
        info = ctx.opts.registry.get(key)
        if info is None:
            raise RequestError(f"unknown setting {key!r}", field)
        try:
            value = info.validate(key, value)
        except OptionError as e:
            raise RequestError(str(e), field) from None
        if info.value_kind() == "folder":
            value = check_folder(ctx, key, value, field)
        elif key == "sd_model_checkpoint" and value:
            value = checkpoint_title(ctx, value, field)
        elif key == "sd_vae":
            value = check_vae(ctx, value, field)
        out[key] = value
    return out


def apply_settings(ctx, values: dict[str, Any]) -> dict[str, Any]:
    """Change settings as a request asked (POST /options, the Settings tab): check everything first
    (nothing changes on an error), switch the checkpoint / VAE they name in the job queue (never
    under a running job), then update and save config.json. Returns the values as stored."""
    values = validate_settings(ctx, values)
    if values.get("sd_model_checkpoint") or "sd_vae" in values:
        if ctx.models is None:
            raise RequestError("no checkpoint loader is attached to this server", status=503)

        def switch(job):
            with ctx.models.lock:
                if values.get("sd_model_checkpoint"):
                    ctx.models.load(values["sd_model_checkpoint"])
                if "sd_vae" in values:
                    ctx.models.set_vae(values["sd_vae"])
        try:
            ctx.jobs.run(ctx.jobs.new_job("load checkpoint"), switch)
        except ValueError as e:  # a file that fails to load: the message says why
            raise RequestError(str(e)) from None
    try:
        ctx.opts.update(values)
    except OptionError as e:  # a setting changed its rules in between: still the request's input
        raise RequestError(str(e)) from None
    ctx.opts.save()
    return values
