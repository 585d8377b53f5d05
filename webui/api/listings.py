"""The GET lists of /sdapi/v1 (samplers, models, styles...), in A1111's shapes.

Each reads the engine part it lists from the application context; a part that is not attached
(no model manager, no styles service...) gives an empty list rather than an error, as A1111 does
for an empty folder.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from modules.context import AppContext


def samplers() -> list[dict]:
    from modules.samplers import SAMPLERS

    out = []
    for s in SAMPLERS:
        options = {"scheduler": s.scheduler} if s.scheduler != "uniform" else {}
        for flag in ("second_order", "brownian_noise", "uses_ensd", "discard_next_to_last_sigma"):
            if getattr(s, flag):
                options[flag] = "True"
        out.append({"name": s.name, "aliases": list(s.aliases), "options": options})
    return out


def schedulers() -> list[dict]:
    from modules.sampler_schedules import SCHEDULERS

    out = []
    for s in SCHEDULERS:
        params = inspect.signature(s.function).parameters if s.function else {}
        rho = params.get("rho")
        needs_model = "inner_model" in params and params["inner_model"].default is inspect.Parameter.empty
        out.append({"name": s.name, "label": s.label, "aliases": list(s.aliases) or None,
                    "default_rho": float(rho.default) if s.takes_rho and rho is not None else -1.0,
                    "need_inner_model": needs_model})
    return out


def _hires():
    from modules import processing_hires
    return processing_hires


def latent_upscale_modes() -> list[dict]:
    return [{"name": name} for name in _hires().LATENT_UPSCALE_MODES]


def upscaler_names(ctx: AppContext) -> list[str]:
    """Everything hr_upscaler / upscaler_1 accept: latent modes, None/Lanczos/Nearest, model upscalers."""
    return _hires().upscaler_names(_extra_upscalers(ctx))


def _extra_upscalers(ctx: AppContext) -> dict:
    extra = ctx.services.get("upscalers") or {}
    return extra if isinstance(extra, dict) else {}


def upscalers(ctx: AppContext) -> list[dict]:
    items = [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": None}
             for name in _hires().IMAGE_UPSCALERS]
    for name, fn in _extra_upscalers(ctx).items():
        items.append({"name": name, "model_name": getattr(fn, "model_name", name),
                      "model_path": _str_or_none(getattr(fn, "model_path", None)),
                      "model_url": None, "scale": getattr(fn, "scale", None)})
    return items


def sd_models(ctx: AppContext) -> list[dict]:
    if ctx.models is None:
        return []
    out = []
    for info in ctx.models.catalog.list():
        yaml = Path(info.filename).with_suffix(".yaml")
        out.append({"title": info.title, "model_name": info.model_name, "hash": info.shorthash,
                    "sha256": info.sha256, "filename": info.filename,
                    "config": str(yaml) if yaml.is_file() else None})
    return out


def sd_vaes(ctx: AppContext) -> list[dict]:
    catalog = getattr(ctx.models, "vae_catalog", None)
    if catalog is None:
        return []
    out = []
    for name in catalog.names()[2:]:  # after "Automatic" and "None"
        info = catalog.get(name)
        if info is not None:
            out.append({"model_name": name, "filename": info.filename})
    return out


def prompt_styles(ctx: AppContext) -> list[dict]:
    db = ctx.services.get("styles")
    styles = getattr(db, "styles", None) or {}
    values = styles.values() if isinstance(styles, dict) else styles
    return [{"name": s.name, "prompt": getattr(s, "prompt", None), "negative_prompt": getattr(s, "negative_prompt", None)}
            for s in values]


def _embedding_item(e: Any) -> dict:
    return {"step": getattr(e, "step", None), "sd_checkpoint": getattr(e, "sd_checkpoint", None),
            "sd_checkpoint_name": getattr(e, "sd_checkpoint_name", None),
            "shape": int(getattr(e, "shape", 0) or 0), "vectors": int(getattr(e, "vectors", 0) or 0)}


def embeddings(ctx: AppContext) -> dict:
    db = ctx.services.get("embeddings")
    if db is None:
        return {"loaded": {}, "skipped": {}}
    loaded = getattr(db, "word_embeddings", None) or getattr(db, "loaded", None) or {}
    skipped = getattr(db, "skipped_embeddings", None) or getattr(db, "skipped", None) or {}
    return {"loaded": {name: _embedding_item(e) for name, e in dict(loaded).items()},
            "skipped": {name: _embedding_item(e) for name, e in dict(skipped).items()}}


def loras(ctx: AppContext) -> list[dict]:
    db = ctx.services.get("lora")
    if db is None:
        return []
    found = getattr(db, "available", None)
    found = found() if callable(found) else found or {}
    values = found.values() if isinstance(found, dict) else found
    return [{"name": getattr(x, "name", ""), "alias": getattr(x, "alias", getattr(x, "name", "")),
             "path": _str_or_none(getattr(x, "filename", None) or getattr(x, "path", None)),
             "metadata": getattr(x, "metadata", None) or {}} for x in values]


def memory() -> dict:
    import psutil
    import torch

    try:
        process = psutil.Process(os.getpid())
        rss = process.memory_info().rss
        total = psutil.virtual_memory().total
        ram: dict = {"free": total - rss, "used": rss, "total": total}
    except Exception as e:  # noqa: BLE001 - a sandbox may hide /proc; report instead of failing
        ram = {"error": str(e)}
    if not torch.cuda.is_available():
        return {"ram": ram, "cuda": {"error": "unavailable"}}
    try:
        free, total = torch.cuda.mem_get_info()
        s = torch.cuda.memory_stats()
        pair = lambda key: {"current": s.get(f"{key}.all.current", 0), "peak": s.get(f"{key}.all.peak", 0)}  # noqa: E731
        cuda = {"system": {"free": free, "used": total - free, "total": total},
                "active": pair("active_bytes"), "allocated": pair("allocated_bytes"),
                "reserved": pair("reserved_bytes"), "inactive": pair("inactive_split_bytes"),
                "events": {"retries": s.get("num_alloc_retries", 0), "oom": s.get("num_ooms", 0)}}
    except Exception as e:  # noqa: BLE001
        cuda = {"error": str(e)}
    return {"ram": ram, "cuda": cuda}


def cmd_flags(ctx: AppContext) -> dict:
    """The parsed flags, JSON-safe; credentials are masked (they are secrets, not settings)."""
    out = {}
    for key, value in vars(ctx.args).items():
        if key in ("api_auth", "gradio_auth") and value:
            value = "<hidden>"
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, (list, tuple)):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        elif not isinstance(value, (str, int, float, bool, type(None))):
            value = str(value)
        out[key] = value
    return out


def extensions(ctx: AppContext) -> list[dict]:
    manager = ctx.extensions
    items = getattr(manager, "extensions", None) if manager is not None else None
    if callable(items):
        items = items()
    out = []
    for ext in items or []:
        out.append({"name": getattr(ext, "name", ""), "remote": getattr(ext, "remote", "") or "",
                    "branch": getattr(ext, "branch", "") or "", "commit_hash": getattr(ext, "commit_hash", "") or "",
                    "version": getattr(ext, "version", "") or "", "commit_date": getattr(ext, "commit_date", "") or "",
                    "enabled": bool(getattr(ext, "enabled", True))})
    return out


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
