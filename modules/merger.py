"""The Checkpoint Merger as a job: checkpoint titles and a VAE name (what the tab and an API client
send) -> modules.models.merge, run in its turn of the job queue, the new file listed at once.

    path = merge_titles(ctx, primary="a [hash]", secondary="b", method="Weighted sum", multiplier=0.3)
"""
from __future__ import annotations

from pathlib import Path

from modules.models import merge


def _source(ctx, title: str | None, label: str) -> merge.Source | None:
    if not title:
        return None
    info = ctx.models.catalog.get(str(title))
    if info is None:
        raise ValueError(f"{label} model {title!r} not found: pick one from the list (or refresh it)")
    return merge.Source(Path(info.filename), info.title, info.sha256, info.hash)


def _vae(ctx, name: str | None) -> Path | None:
    if not name or name in ("None", "Automatic"):
        return None
    catalog = getattr(ctx.models, "vae_catalog", None)
    info = catalog.get(name) if catalog is not None else None
    if info is None:
        raise ValueError(f"VAE {name!r} not found in {ctx.paths.vae_dir}")
    return Path(info.filename)


def build_request(ctx, primary: str, secondary: str | None = None, tertiary: str | None = None,
                  method: str = "Weighted sum", multiplier: float = 0.3, save_as_half: bool = False,
                  custom_name: str = "", checkpoint_format: str = "safetensors", config_source: int = 0,
                  bake_in_vae: str | None = None, discard_weights: str = "", save_metadata: bool = True
                  ) -> merge.MergeRequest:
    if not primary:
        raise ValueError("choose a primary model (A)")
    request = merge.MergeRequest(
        _source(ctx, primary, "primary"), _source(ctx, secondary, "secondary"), _source(ctx, tertiary, "tertiary"),
        method=method, multiplier=float(multiplier), save_as_half=bool(save_as_half),
        custom_name=(custom_name or "").strip(), checkpoint_format=checkpoint_format,
        config_source=int(config_source), bake_in_vae=_vae(ctx, bake_in_vae),
        discard_weights=discard_weights or "", save_metadata=bool(save_metadata))
    merge.check(request)
    return request


def merge_titles(ctx, **fields) -> Path:
    """Merge in the job queue (never beside a running generation's memory peak), into the first
    checkpoint folder; the catalog is refreshed so the file is listed at once."""
    request = build_request(ctx, **fields)
    out_dir = Path(ctx.paths.ckpt_dirs[0])

    def work(job):
        job.job_count = 1

        def say(text: str) -> None:
            job.textinfo = text
        return merge.merge_checkpoints(request, out_dir, progress=say)
    path = ctx.jobs.run(ctx.jobs.new_job("merge checkpoints"), work)
    ctx.models.refresh()
    return path
