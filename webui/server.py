"""Server wiring: flags -> application context -> FastAPI app (API routes first) -> Gradio UI -> uvicorn."""
from __future__ import annotations

import logging
import os
import socket
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402  (after GRADIO_ANALYTICS_ENABLED)
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from modules import cmd_args, distributed  # noqa: E402
from modules.context import AppContext, create_context  # noqa: E402
from modules.plugins import preload  # noqa: E402
from webui import extension_files  # noqa: E402
from webui.api import routes  # noqa: E402
from webui.ui import app as ui_app  # noqa: E402
from webui.ui import gradio3_compat, scripts_ui  # noqa: E402

log = logging.getLogger("sdwebui")


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def build_app(ctx: AppContext):
    """The FastAPI app with the API (when asked for) and the Gradio UI (unless --nowebui)."""
    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs" if ctx.args.api else None)
    scripts = ctx.services.scripts
    if scripts is not None:
        scripts_ui.attach(ctx)  # builds script controls (defaults for the API) also with --nowebui
    if ctx.args.api:
        routes.install(app, ctx)
    if not ctx.args.nowebui:
        extension_files.install(app, ctx)  # A1111's /file= for extensions' javascript
        demo = ui_app.create_ui(ctx)
        auth = cmd_args.parse_credentials(ctx.args.gradio_auth, "--gradio-auth") if ctx.args.gradio_auth else None
        # Gradio must be mounted last: routes registered after a mount at "/" would 404.
        app = gr.mount_gradio_app(app, demo, path="/", auth=auth, **ui_app.mount_kwargs(ctx))
    else:
        demo = None
    if scripts is not None:
        scripts.app_started(demo, app)  # on_app_started(demo, app)
        app.router.add_event_handler("shutdown", scripts.unload)  # on_script_unloaded
        _mount_last(app)  # routes extensions added (A1111 extensions add theirs here) come before the UI's "/"
    return app


def _mount_last(app) -> None:
    """Keep the Gradio UI mounted at "/" after every other route: a mount at "/" answers every path."""
    from starlette.routing import Mount

    routes = app.router.routes
    mounts = [r for r in routes if isinstance(r, Mount) and r.path in ("", "/")]
    routes[:] = [r for r in routes if r not in mounts] + mounts


def start(ctx: AppContext) -> int:
    host, port = cmd_args.server_address(ctx.args)
    if port_in_use(host, port):
        print(f"launch.py: port {port} on {host} is already in use: stop the other server or pick "
              f"another with --port", file=sys.stderr)
        return 1
    app = build_app(ctx)
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    print(f"Running on http://{shown}:{port}" + (" (listening on all interfaces)" if host == "0.0.0.0" else ""),
          flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    app.state.stop_server = lambda: setattr(server, "should_exit", True)  # POST /sdapi/v1/server-stop
    server.run()
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        parser = cmd_args.make_parser()
        preload.add_flags(parser, argv)
        args = cmd_args.parse_args(argv, parser)
        ctx = create_context(args)
    except (cmd_args.ArgumentError, PermissionError) as e:
        print(f"launch.py: {e}", file=sys.stderr)
        return 2
    from modules import startup  # after the flags: a bad flag answers before torch is imported

    if distributed.wanted(args):  # Ray is imported only here
        from modules.distributed.cluster import ClusterError  # imports ray
        try:
            distributed.attach(ctx, ui_sandbox=scripts_ui.sandbox, ui_environment=gradio3_compat.environment)
        except ClusterError as e:
            print(f"launch.py: {e}", file=sys.stderr)
            return 2
    else:
        startup.attach_engine(ctx, extension_ui_environment=gradio3_compat.environment)
    return start(ctx)
