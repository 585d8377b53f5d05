"""One UI and API in front of many GPUs and machines, on Ray (`--workers N`, `--ray-address ADDR`).

The front end (this process) keeps the job registry and the queue (ctx.jobs) and loads no model;
each worker (worker.py, a Ray actor: one per GPU or per CPU slot) holds its own application context
and runs jobs through `generation.run`. pool.py dispatches, mirrors progress and handles faults,
scheduling.py picks the worker (model affinity), cluster.py joins or starts the cluster, models.py
is the front end's model manager. Without the flags none of this (nor Ray) is imported.
"""
from __future__ import annotations


def wanted(args) -> bool:
    """The flags ask for workers."""
    return bool(getattr(args, "workers", None) or getattr(args, "ray_address", None))


def attach(ctx, temp_dir: str | None = None, wait: float | None = None, ui_sandbox=None, ui_environment=None):
    """The front end's engine parts (catalogs, prompt services, extensions - no model), then the
    workers; ctx.models becomes a ClusterModels and ctx.workers the pool. Returns the pool.
    ui_sandbox: the front end's off-page context for script controls (the workers build them too);
    ui_environment: its context for extensions' UI code (Gradio 3 compatibility), here and in workers."""
    from modules import startup
    from modules.distributed.cluster import make_pool
    from modules.distributed.models import ClusterModels

    startup.attach_engine(ctx, preload=False, extension_ui_environment=ui_environment)
    if ui_sandbox is not None and ctx.services.scripts is not None:
        ctx.services.scripts.set_ui_sandbox(ui_sandbox)
    pool = make_pool(ctx, temp_dir=temp_dir, wait=wait, ui_sandbox=ui_sandbox, ui_environment=ui_environment)
    ctx.models = ClusterModels(ctx, ctx.models, pool)
    ctx.workers = pool
    return pool
