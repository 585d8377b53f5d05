"""Running a generation from the UI: through the shared job queue, with progress, preview and errors
turned into messages the user can act on.

The job runs in a worker thread; the Gradio event is a generator that polls the job and yields
progress (queue position, step, ETA, live preview). If the browser goes away, Gradio closes the
generator and the job is interrupted, so no zombie job keeps the device busy.
"""
from __future__ import annotations

import html
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from PIL import PngImagePlugin

from modules import startup
from modules.context import AppContext
from modules.jobs import JobCancelled

log = logging.getLogger("sdwebui.ui")

POLL_SECONDS = 0.5


def user_message(e: BaseException) -> str:
    """The line shown in the browser. ValueError (and its kin) are written for users already."""
    from modules import devices
    if isinstance(e, (ValueError, devices.OutOfMemory)):
        return str(e)
    if isinstance(e, MemoryError):
        return "Out of memory: try a smaller size or batch, or start with --medvram"
    log.error("generation failed", exc_info=e)
    return f"Generation failed ({type(e).__name__}: {e}); the log has the details"


def png_file(image, infotext: str | None, folder: Path) -> str:
    """A PNG with the `parameters` chunk for the gallery (what the user downloads keeps its infotext)."""
    info = PngImagePlugin.PngInfo()
    if infotext:
        info.add_text("parameters", infotext)
    f = tempfile.NamedTemporaryFile(dir=folder, suffix=".png", delete=False)
    with f:
        image.save(f, format="PNG", pnginfo=info)
    return f.name


def save_outputs(ctx: AppContext, images: list, infotexts: list, outdir_key: str, seed=None) -> None:
    """Save to the outputs folder as the generation tabs do (setting samples_save; atomic, never overwrites)."""
    if not ctx.opts.samples_save:
        return
    from modules.images import output_dir, save_image
    folder = output_dir(ctx.opts, outdir_key, ctx.paths.data_dir)
    for image, text in zip(images, infotexts, strict=True):
        save_image(image, folder, seed=seed, info=text, opts=ctx.opts)


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


def run_job(ctx: AppContext, name: str, work: Callable[[Any], Any]):
    """Generator: yields ("progress", html, preview) while the job waits/runs, then ("done", result, job).

    work(job) runs in a worker thread once the queue gives the job its turn; its exception is
    re-raised here as gr.Error with a user-facing message.
    """
    job = ctx.jobs.new_job(name)
    state: dict[str, Any] = {"position": None}
    closed = threading.Event()

    def target():
        try:
            state["result"] = ctx.jobs.run(job, work, on_wait=lambda pos: state.update(position=pos),
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


def ensure_model(ctx: AppContext):
    try:
        return startup.current_model(ctx)
    except startup.NoCheckpoint as e:
        raise gr.Error(str(e)) from None


def gallery_outputs(processed, tmp_dir: Path) -> tuple[list, str, dict]:
    """Processed -> (gallery file paths with captions, the first infotext, seeds json)."""
    files = []
    for i, image in enumerate(processed.images):
        infotext = processed.infotexts[i] if i < len(processed.infotexts) else processed.info
        files.append((png_file(image, infotext, tmp_dir), None))
    first = processed.infotexts[0] if processed.infotexts else ""
    return files, first, {"seed": processed.seed, "all_seeds": processed.all_seeds}


def comments_html(processed) -> str:
    comments = getattr(processed, "comments", "") or ""
    if isinstance(comments, dict):
        comments = "\n".join(comments)
    return "".join(f"<p class='comments'>{html.escape(c)}</p>" for c in str(comments).splitlines() if c.strip())


def interrupted_html(job) -> str:
    if job is None or not job.interrupted:
        return ""
    return (f"<p class='comments' id='interrupted'>Interrupted at step {job.sampling_step} of "
            f"{job.sampling_steps}: the image shows the state at that step.</p>")


def wait_seconds(t0: float) -> str:
    return f"Time taken: {time.time() - t0:.1f} s"
