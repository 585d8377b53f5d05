"""The engine's one entry point. Every front end - the Gradio tabs, /sdapi/v1, scripts that start
jobs, a remote worker - hands it a GenerationRequest (plain data) and gets a GenerationResult back:

    result = generation.submit(ctx, GenerationRequest("txt2img", {"prompt": "a red circle", "steps": 20}))
    result.images, result.infotexts, result.all_seeds

- prepare(ctx, request): checks it (RequestError naming the field; a bad request is never queued)
  and resolves its names -> Prepared.
- execute(ctx, prepared, job): runs it in the caller's turn of the queue: with the model manager's
  lock held (a checkpoint switch from anywhere waits for the job), the request's settings overrides
  applied once and restored after (the checkpoint and VAE they name loaded), the task (dropdown script
  or process_images, depth2img, extras), and engine errors turned into RequestError.
- run(ctx, request, job) = prepare + execute: what a remote worker calls (the queue is the front end's).
- submit(ctx, request, ...) = prepare + wait for the queue + execute: what a front end calls. With
  workers (ctx.workers, modules.distributed) the job waits in the same queue and a worker runs it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

from modules import devices, startup
from modules.errors import RequestError
from modules.generation import tasks
from modules.generation.request import TASKS, GenerationRequest, GenerationResult
from modules.generation.validate import MAX_PROMPT_LENGTH, Prepared, paste_infotext, prepare
from modules.jobs import Job, JobInterrupted
from modules.plugins.runner import ScriptError

__all__ = ["GenerationRequest", "GenerationResult", "Prepared", "RequestError", "TASKS", "MAX_PROMPT_LENGTH",
           "execute", "paste_infotext", "prepare", "run", "submit"]


@contextlib.contextmanager
def _job_settings(ctx, overrides: dict[str, Any], restore: bool):
    """override_settings for one job: options, and the checkpoint/VAE they name; restored after
    unless the request said override_settings_restore_afterwards=false."""
    models = ctx.models
    previous_ckpt = models.current.info if models is not None and models.current is not None else None
    previous_vae = getattr(models, "vae_choice", None)
    with ctx.opts.override(overrides, restore=restore):
        try:
            if overrides.get("sd_model_checkpoint"):
                models.load(overrides["sd_model_checkpoint"])
            if "sd_vae" in overrides:
                models.set_vae(overrides["sd_vae"])
            yield
        finally:
            if restore and "sd_vae" in overrides and previous_vae is not None:
                models.set_vae(previous_vae)
            if restore and overrides.get("sd_model_checkpoint") and previous_ckpt is not None:
                models.load(previous_ckpt)


def execute(ctx, prepared: Prepared, job: Job | None = None) -> GenerationResult:
    """Run a prepared request now (the caller has its turn in the queue)."""
    if ctx.models is None and prepared.task != "extras":
        raise RequestError("no checkpoint loader is attached to this server, so nothing can be generated",
                           status=503)
    lock = ctx.models.lock if ctx.models is not None else contextlib.nullcontext()
    try:
        with lock, _job_settings(ctx, prepared.override_settings, prepared.restore_settings):
            return tasks.RUNNERS[prepared.task](ctx, prepared, job)
    except RequestError:
        raise
    except JobInterrupted as e:  # stopped before anything could be shown
        return GenerationResult(interrupted=True, comments=str(e))
    except startup.NoCheckpoint as e:
        raise RequestError(str(e), status=503) from None
    except (ScriptError, devices.OutOfMemory) as e:  # a crashed script, or the device ran out of memory
        raise RequestError(str(e), status=500) from None
    except MemoryError:
        raise RequestError("out of memory: try a smaller size or batch, or start with --medvram", status=500) from None
    except ValueError as e:  # the engine's message for input it found it cannot use
        raise RequestError(str(e)) from None


def run(ctx, request: GenerationRequest, job: Job | None = None) -> GenerationResult:
    return execute(ctx, prepare(ctx, request), job)


def submit(ctx, request: GenerationRequest, job: Job | None = None,
           on_wait: Callable[[int], None] | None = None, cancelled: Callable[[], bool] | None = None
           ) -> GenerationResult:
    """Check the request, wait for its turn in the shared queue (on_wait(position) while waiting;
    cancelled() -> True withdraws it), then run it in this thread."""
    prepared = prepare(ctx, request)
    job = job or ctx.jobs.new_job(request.task)
    if ctx.workers is not None:  # the same queue; the job runs on a worker (modules.distributed)
        return ctx.workers.submit(request, prepared, job, on_wait=on_wait, cancelled=cancelled)
    return ctx.jobs.run(job, lambda j: execute(ctx, prepared, j), on_wait=on_wait, cancelled=cancelled)
