"""What passes between a front-end job and its worker, besides the request itself: the seeds fixed
before the first try, the checkpoint the job runs on, the settings a job keeps afterwards, and the
worker's progress copied onto the front end's Job."""
from __future__ import annotations

import dataclasses

from modules.errors import RequestError
from modules.sampling.rng import fix_seed


def keep_settings(ctx, overrides: dict) -> None:
    """override_settings_restore_afterwards=false: the front end keeps what the job changed (the
    workers took it for that job only), as one process keeps it in its own settings."""
    ctx.opts.update(overrides)
    if overrides.get("sd_model_checkpoint"):
        ctx.models.load(overrides["sd_model_checkpoint"])
    if "sd_vae" in overrides:
        ctx.models.set_vae(overrides["sd_vae"])


def mirror(job, snap: dict, seen: int) -> int:
    """Copy a worker's progress snapshot onto the front end's Job; returns the preview seen."""
    if snap["job_no"] != job.job_no:
        job.begin_image(snap["job_no"], snap["sampling_steps"])  # skip applies to one image
    job.job_count, job.sampling_steps, job.textinfo = snap["job_count"], snap["sampling_steps"], snap["textinfo"]
    job.set_step(snap["sampling_step"], snap["preview"])
    return snap["preview_seq"]


def fixed_seeds(request, prepared):
    """The request with -1 seeds replaced by the random ones they would become, so that a re-run
    on another worker makes the same images (the single-process app draws them when the job starts)."""
    keys = {"txt2img": ("seed", "subseed"), "img2img": ("seed", "subseed"), "depth2img": ("seed",)}
    params = dict(request.params)
    for key in keys.get(prepared.task, ()):
        value = prepared.params.get(key, -1)
        if not isinstance(value, (list, tuple)) and (value is None or str(value).strip() in ("", "-1")):
            params[key] = fix_seed(-1)
    return dataclasses.replace(request, params=params)


def wanted_checkpoint(ctx, prepared) -> str | None:
    """The checkpoint a job runs on: its override_settings, else the one chosen in the UI / options
    (ctx.models is a ClusterModels), else the default; None for extras."""
    if prepared.task == "extras":
        return None
    title = (prepared.override_settings or {}).get("sd_model_checkpoint")
    if title:
        return str(title)
    current = ctx.models.current if ctx.models is not None else None
    if current is None:
        raise RequestError("No checkpoint found: put a .safetensors or .ckpt file (SD v1/v2) into "
                           f"{ctx.paths.ckpt_dirs[0]} and press the refresh button next to the checkpoint list",
                           status=503)
    return current.info.title
