"""The GET lists of /sdapi/v1 (samplers, models, styles...), in A1111's shapes.

Each reads the engine part it lists from the application context; a part that is not attached
(no model manager, no styles service...) gives an empty list rather than an error, as A1111 does
for an empty folder.
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import psutil
import torch

from modules.context import AppContext
from modules.processing import hires
from modules.sampling.samplers import SAMPLERS
from modules.sampling.schedules import SCHEDULERS


def samplers() -> list[dict]:
    out = []
    for s in SAMPLERS:
        options = {"scheduler": s.scheduler} if s.scheduler != "uniform" else {}
        for flag in ("second_order", "brownian_noise", "uses_ensd", "discard_next_to_last_sigma"):
            if getattr(s, flag):
                options[flag] = "True"
        out.append({"name": s.name, "aliases": list(s.aliases), "options": options})
    return out


def schedulers() -> list[dict]:
    out = []
    for s in SCHEDULERS:
        params = inspect.signature(s.function).parameters if s.function else {}
        rho = s.option("rho")
        needs_model = "inner_model" in params and params["inner_model"].default is inspect.Parameter.empty
        out.append({"name": s.name, "label": s.label, "aliases": list(s.aliases) or None,
                    "default_rho": rho.default if rho else -1.0,
                    "need_inner_model": needs_model})
    return out


def latent_upscale_modes() -> list[dict]:
    return [{"name": name} for name in hires.LATENT_UPSCALE_MODES]


def upscaler_names(ctx: AppContext) -> list[str]:
    """Everything hr_upscaler accepts: latent modes, then the upscaler table."""
    return hires.upscaler_names(ctx.services.upscalers)


def upscalers(ctx: AppContext) -> list[dict]:
    return [{"name": u.name, "model_name": u.model_name, "model_path": _model_path(u), "model_url": None,
             "scale": u.scale} for u in ctx.services.upscalers.entries()]


def _model_path(upscaler) -> str | None:
    """The entry's file, or the one its service found in the catalog now (SD x4: a user's or the demo)."""
    if upscaler.model_path:
        return upscaler.model_path
    find = getattr(upscaler.service, "checkpoint", None)
    path = find() if callable(find) else None
    return str(path) if path else None


def sd_models(ctx: AppContext) -> list[dict]:
    if ctx.models is None:
        return []
    out = []
    for info in ctx.models.catalog.list():
        yaml = Path(info.filename).with_suffix(".yaml")
        out.append({"title": info.title, "model_name": info.model_name, "hash": info.shorthash,
                    "sha256": info.sha256, "filename": info.filename,
                    "config": str(yaml) if yaml.is_file() else None, "family": info.family})
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


def _as_api(ctx: AppContext, service: str, empty):
    """The service's own A1111-shaped listing (`as_api()`), or `empty` when it is not attached."""
    db = getattr(ctx.services, service)
    return db.as_api() if db is not None else empty


def prompt_styles(ctx: AppContext) -> list[dict]:
    return _as_api(ctx, "styles", [])          # modules.styles.StyleDatabase


def embeddings(ctx: AppContext) -> dict:
    return _as_api(ctx, "embeddings", {"loaded": {}, "skipped": {}})  # modules.embeddings.EmbeddingDatabase


def loras(ctx: AppContext) -> list[dict]:
    return _as_api(ctx, "lora", [])            # modules.lora.network.LoraDatabase


def memory(ctx: AppContext) -> dict:
    """This process's RAM and CUDA memory (A1111's shape); with workers also `workers`: each one's
    device, health, loaded models, current job and memory (modules.distributed.pool.describe)."""
    out = _memory()
    if ctx.workers is not None:
        out["workers"] = ctx.workers.describe()
    return out


def _memory() -> dict:

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
