"""A real server (uvicorn on a free loopback port, in a thread) for UI, API and browser tests."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`with LiveServer(ctx) as url:` serves webui.server.build_app(ctx) until the block ends."""

    def __init__(self, ctx, startup_timeout: float = 120.0):
        from webui.server import build_app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(build_app(ctx), host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=2)  # open event streams must not hold the exit
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)
        self.startup_timeout = startup_timeout

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
