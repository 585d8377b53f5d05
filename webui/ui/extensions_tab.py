"""Extensions tab: installed extensions (enable checkboxes, status, errors, check for updates) and
"Install from URL". Installing/updating is refused (and the buttons are off) when the server listens
beyond localhost without --enable-insecure-extension-access."""
from __future__ import annotations

import html
from datetime import datetime

import gradio as gr

from modules.context import AppContext


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts else ""


def _problems_html(manager, name: str) -> str:
    items = []
    for p in manager.problems_of(name):
        details = f"<details><summary>details</summary><pre>{html.escape(p.details)}</pre></details>" \
            if p.details else ""
        items.append(f"<li class='extension-error'><b>{html.escape(p.where)}</b>: {html.escape(p.message)}{details}</li>")
    items += [f"<li class='extension-note'>{html.escape(n)}</li>" for n in manager.notes_of(name)]
    return f"<ul>{''.join(items)}</ul>" if items else ""


def installed_html(ctx: AppContext, updates: dict | None = None) -> str:
    manager = ctx.extensions
    if manager is None:
        return "<p>Extensions are not loaded.</p>"
    rows = []
    for ext in manager.extensions:
        remote = html.escape(ext.remote or "")
        update = html.escape((updates or {}).get(ext.name, ""))
        rows.append(
            f"<tr data-extension='{html.escape(ext.name, quote=True)}'><td>{html.escape(ext.name)}"
            f"{' <small>(built-in)</small>' if ext.is_builtin else ''}</td>"
            f"<td>{html.escape(ext.status)}</td><td>{html.escape(ext.version)} {_when(ext.commit_date)}</td>"
            f"<td>{remote}</td><td>{update}</td><td>{ext.load_seconds:.2f} s</td>"
            f"<td>{_problems_html(manager, ext.name)}</td></tr>")
    mode = manager.disable_mode()
    note = "" if mode == "none" else f"<p><b>Extensions disabled ({mode}) by flag or setting.</b></p>"
    return (note + "<table id='extensions_table'><thead><tr><th>Extension</th><th>Status</th><th>Version</th>"
            "<th>URL</th><th>Update</th><th>Load time</th><th>Problems</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _access_message(ctx: AppContext) -> str | None:
    try:
        ctx.extensions.check_access()
    except PermissionError as e:
        return str(e)
    return None


def apply_enabled(ctx: AppContext, enabled: list[str]) -> str:
    return html.escape(ctx.extensions.set_enabled_many(list(enabled or [])))


def check_updates(ctx: AppContext) -> str:
    try:
        updates = ctx.extensions.check_for_updates()
    except (PermissionError, ValueError) as e:
        raise gr.Error(str(e)) from None
    return installed_html(ctx, updates)


def install(ctx: AppContext, url: str, branch: str, name: str) -> tuple[str, str]:
    try:
        ext = ctx.extensions.install_from_url(url, name.strip() or None, branch.strip() or None)
    except (PermissionError, ValueError) as e:
        raise gr.Error(str(e)) from None
    message = f"Installed into {ext.path}. Restart the web UI to load it."
    if ext.install is not None and not ext.install.ok:
        message += f" install.py: {ext.install.message}"
    return html.escape(message), installed_html(ctx)


def create_tab(ctx: AppContext) -> None:
    manager = ctx.extensions
    if manager is None:
        gr.Markdown("Extensions are not loaded in this server.")
        return
    denied = _access_message(ctx)
    with gr.Tabs(elem_id="tabs_extensions"):
        with gr.Tab("Installed", id="extensions_installed"):
            names = [e.name for e in manager.extensions]
            enabled = gr.CheckboxGroup(names, value=[e.name for e in manager.extensions if e.enabled],
                                       label="Enabled extensions (applied at the next start)",
                                       elem_id="extensions_enabled")
            with gr.Row():
                apply = gr.Button("Apply (takes effect after a restart)", elem_id="extensions_apply")
                check = gr.Button("Check for updates", elem_id="extensions_check", interactive=denied is None)
            message = gr.HTML(elem_id="extensions_message")
            table = gr.HTML(installed_html(ctx), elem_id="extensions_installed_html")
        with gr.Tab("Install from URL", id="extensions_install_tab"):
            if denied:
                gr.Markdown(denied, elem_id="extensions_denied")
            url = gr.Textbox(label="URL for extension's git repository", elem_id="extension_to_install")
            branch = gr.Textbox(label="Specific branch name (empty for default)", elem_id="extension_install_branch")
            dirname = gr.Textbox(label="Local directory name (empty for automatic)", elem_id="extension_install_dirname")
            install_button = gr.Button("Install", variant="primary", elem_id="extension_install_button",
                                       interactive=denied is None)
            result = gr.HTML(elem_id="extension_install_result")
    apply.click(lambda values: apply_enabled(ctx, values), inputs=enabled, outputs=message,
                api_name="extensions_apply")
    check.click(lambda: check_updates(ctx), outputs=table, api_name="extensions_check")
    install_button.click(lambda u, b, n: install(ctx, u, b, n), inputs=[url, branch, dirname],
                         outputs=[result, table], api_name="extensions_install")
