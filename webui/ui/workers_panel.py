"""The "Workers" panel (with --workers / --ray-address): each worker's device, health, loaded
checkpoints and current job, refreshed every few seconds from the pool's own record (a dead worker
cannot make the page wait)."""
from __future__ import annotations

import html

import gradio as gr

from modules.context import AppContext

REFRESH_S = 2.0


def _job(job: dict | None) -> str:
    if job is None:
        return "-"
    steps = f" step {job['step']}/{job['steps']}" if job["steps"] else ""
    return f"#{job['id']} {job['name']}{steps} ({int(100 * job['progress'])}%)"


def workers_html(ctx: AppContext) -> str:
    rows = []
    for w in ctx.workers.describe():
        health = "ok" if w["healthy"] else w["state"] + (f": {w['error']}" if w["error"] else "")
        cells = [str(w["id"]), f"{w['host'] or '?'} pid {w['pid'] or '?'}", w["device"] or "?", w["state"], health,
                 ", ".join(w["loaded_models"]) or "-", _job(w["job"]), str(w["jobs_done"]), str(w["restarts"])]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("worker", "where", "device", "state", "health", "loaded models",
                                               "current job", "jobs done", "restarts"))
    waiting = ctx.jobs.queue_length()
    return (f"<table id='workers_table'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p>{len(rows)} worker(s), {waiting} job(s) waiting</p>")


def create(ctx: AppContext) -> None:
    """Inside the page's Blocks; nothing without workers."""
    if ctx.workers is None:
        return
    with gr.Accordion("Workers", open=False, elem_id="workers_panel"):
        table = gr.HTML(workers_html(ctx), elem_id="workers_status")
    gr.Timer(REFRESH_S).tick(lambda: workers_html(ctx), outputs=table, api_visibility="private", queue=False,
                             show_progress="hidden")
