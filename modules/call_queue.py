"""A1111's `modules.call_queue` path, for extensions' Gradio handlers: wrap_queued_call and
wrap_gradio_gpu_call run the function as a job of this application's queue (one job at a time,
with the generations; shared.state reads it), wrap_gradio_call turns an exception into an error
message in the page. Nothing in the project imports this module."""
from __future__ import annotations

import functools
import html
import logging

from modules.script_callbacks import current_scope

log = logging.getLogger("sdwebui.extensions")


def wrap_queued_call(func):
    """func runs as a job of the application's queue (waits for a running generation)."""
    scope = current_scope()  # the extension that wraps: its handlers run later, in server threads

    @functools.wraps(func)
    def f(*args, **kwargs):
        jobs = scope.ctx.jobs
        job = jobs.new_job(getattr(func, "__name__", "extension"))
        return jobs.run(job, lambda _job: func(*args, **kwargs))
    return f


def wrap_gradio_call(func, extra_outputs=None, add_stats: bool = False):
    """An exception becomes (extra outputs..., an error message as HTML, ...) instead of a trace."""
    @functools.wraps(func)
    def f(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - shown to the user, like A1111's
            log.exception("error in an extension's handler %s", getattr(func, "__name__", func))
            message = f"<div class='error'>{html.escape(type(e).__name__)}: {html.escape(str(e))}</div>"
            extra = list(extra_outputs) if extra_outputs is not None else [None]
            return (*extra, message, "") if add_stats else (*extra, message)
    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    return wrap_gradio_call(wrap_queued_call(func), extra_outputs=extra_outputs)


def wrap_gradio_call_no_job(func, extra_outputs=None, add_stats: bool = False):
    return wrap_gradio_call(func, extra_outputs, add_stats)
