"""Running a generation from the UI: the engine's entry point (modules.generation.submit) in a worker
thread, with progress, preview and errors turned into messages the user can act on.

The Gradio event is a generator that polls the job and yields progress (queue position, step, ETA,
live preview). If the browser goes away, Gradio closes the generator and the job is interrupted (or
withdrawn from the queue), so no zombie job keeps the device busy.
"""
from __future__ import annotations

import html
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr

from modules import generation, image_metadata
from modules.context import AppContext
from modules.errors import RequestError
from modules.generation import GenerationRequest, GenerationResult
from modules.jobs import JobCancelled

log = logging.getLogger("sdwebui.ui")

POLL_SECONDS = 0.5


def user_message(e: BaseException) -> str:
    """The line shown in the browser. The engine's RequestError is written for users already."""
    if isinstance(e, RequestError):
        return str(e)
    if isinstance(e, MemoryError):
        return "Out of memory: try a smaller size or batch, or start with --medvram"
    log.error("generation failed", exc_info=e)
    return f"Generation failed ({type(e).__name__}: {e}); the log has the details"


def png_file(image, infotext: str | None, folder: Path) -> str:
    """A PNG with the `parameters` chunk for the gallery (what the user downloads keeps its infotext)."""
    f = tempfile.NamedTemporaryFile(dir=folder, suffix=".png", delete=False)
    with f:
        f.write(image_metadata.encode_image(image, "png", infotext))
    return f.name


def progress_html(ctx: AppContext, job, waiting_position: int | None) -> str:
    if waiting_position:
        return f"<span class='progress'>In queue: {waiting_position} job(s) ahead</span>"
    if job.started is None:
        return "<span class='progress'>Starting...</span>"
    eta = job.eta_seconds()
    parts = [f"Image {job.job_no + 1}/{job.job_count}" if job.job_count > 1 else "",
             f"step {job.sampling_step}/{job.sampling_steps}" if job.sampling_steps else "loading model...",
             f"ETA {eta:.0f}s" if eta else ""]
    pct = int(100 * job.progress_fraction())
    return (f"<div class='progress' data-progress='{pct}'><progress value='{pct}' max='100'></progress> "
            f"{html.escape(', '.join(p for p in parts if p))}</div>")


def run_job(ctx: AppContext, request: GenerationRequest):
    """Generator: yields ("progress", html, preview) while the job waits/runs, then ("done", result, job).

    The request is checked and run by the engine in a worker thread once the queue gives it its
    turn; its RequestError is re-raised here as gr.Error with the engine's message.
    """
    job = ctx.jobs.new_job(request.task)
    state: dict[str, Any] = {"position": None}
    closed = threading.Event()

    def target():
        try:
            state["result"] = generation.submit(ctx, request, job, on_wait=lambda pos: state.update(position=pos),
                                                cancelled=closed.is_set)
        except JobCancelled:
            state["cancelled"] = True
        except BaseException as e:  # reported to the user below
            state["error"] = e
        finally:
            state["position"] = 0

    # Gradio registers a generator (so that a closed tab or a cancel can close it) only after its
    # first step returns: yield once before any work starts, so no work can outlive an early cancel.
    yield "progress", progress_html(ctx, job, None), None
    worker = threading.Thread(target=target, name=f"job-{job.id}", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            if worker.is_alive():
                yield "progress", progress_html(ctx, job, state["position"]), job.current_image
    except GeneratorExit:  # the browser went away: stop the work instead of leaving a zombie
        closed.set()
        job.interrupt()
        raise
    if "error" in state:
        raise gr.Error(user_message(state["error"]))
    yield "done", state.get("result"), job


def gallery_outputs(result: GenerationResult, tmp_dir: Path) -> tuple[list, str, dict]:
    """A result -> (gallery file paths with captions, the first infotext, seeds json)."""
    files = [(png_file(image, text, tmp_dir), None) for image, text in zip(result.images, result.infotexts,
                                                                          strict=True)]
    return files, result.infotext, {"seed": result.seed, "all_seeds": result.all_seeds}


def comments_html(result: GenerationResult) -> str:
    return "".join(f"<p class='comments'>{html.escape(c)}</p>" for c in result.comments.splitlines() if c.strip())


def interrupted_html(job) -> str:
    if job is None or not job.interrupted:
        return ""
    return (f"<p class='comments' id='interrupted'>Interrupted at step {job.sampling_step} of "
            f"{job.sampling_steps}: the image shows the state at that step.</p>")


def wait_seconds(t0: float) -> str:
    return f"Time taken: {time.time() - t0:.1f} s"
