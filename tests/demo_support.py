"""What the tests of the shipped scene demos (depth2img, SD x4) share: a data dir holding copies of
the demos and nothing else, as a new user has, and the pictures a browser page shows."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.startup import DEMO_FILE

MODELS = DEMO_FILE.parents[1]


def copy_demos(folder: Path, names: tuple[str, ...]) -> None:
    """Copies of the shipped demos in `folder` (not the shipped files: is_demo stays false)."""
    for name in names:
        for suffix in (".safetensors", ".yaml"):
            if not (MODELS / name / f"{name}{suffix}").is_file():
                pytest.fail(f"the {name} demo is missing: {MODELS / name} (python -m modules.training.demo_scenes "
                            "writes demo-depth and demo-x4)")
        (folder / name).mkdir(parents=True)
        for suffix in (".safetensors", ".yaml"):
            shutil.copy(MODELS / name / f"{name}{suffix}", folder / name / f"{name}{suffix}")


def demo_api(root: Path, names: tuple[str, ...]):
    """(ctx, TestClient) of the HTTP API over a data dir in `root` that holds only these demos."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tests.api_support import make_context
    from webui.api import routes

    copy_demos(root / "models" / "Stable-diffusion", names)
    ctx = make_context(root)
    app = FastAPI()
    routes.install(app, ctx)
    return ctx, TestClient(app)


def demo_server(root: Path, names: tuple[str, ...]):
    """Yields (ctx, url, page): a server over a data dir in `root` holding only these demos, and one
    Chromium page (tests.browser_support.serve), closed when the module's fixture ends - not the
    session's browser_app, which stays open to the end and would clash with later modules' Playwright."""
    from tests.browser_support import serve

    copy_demos(root / "models" / "Stable-diffusion", names)
    yield from serve(root)


def page_image(page, url: str, selector: str) -> np.ndarray:
    """The picture an <img> of the page shows, as the browser fetched it."""
    src = page.locator(selector).first.get_attribute("src")
    data = page.request.get(src if src.startswith("http") else url + src).body()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
