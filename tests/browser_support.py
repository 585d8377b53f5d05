"""What the browser tests share: Debian's chromium driven by Playwright against a live server with tiny
models (one server and page for the whole session: tests/conftest.py's `browser_app`), and helpers
that act as a user does (click, type, pick from a dropdown).

Screenshots are kept as artifacts in a temp dir (printed at the end), not committed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
SHOTS = Path(tempfile.gettempdir()) / "sdwebui-screenshots"


def browser_or_skip():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed here (apt-get install chromium); CI installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: it is in requirements-test.txt")
    return sync_playwright


def serve(root: Path):
    """Yields (ctx, url, page): a server over the data dir `root` and a page showing its UI."""
    from tests.api_support import make_context
    from tests.live_server import LiveServer

    sync_playwright = browser_or_skip()
    ctx = make_context(root)
    SHOTS.mkdir(exist_ok=True)
    with LiveServer(ctx) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#txt2img_prompt textarea")
        yield ctx, url, page
        browser.close()
    print(f"\nscreenshots: {SHOTS}")


def open_tab(page, elem_id: str) -> None:
    page.click(f"#{elem_id}-button")


def set_slider(page, elem_id: str, value) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def choose(page, elem_id: str, text: str) -> None:
    """Pick the option containing `text` from the dropdown `elem_id` (typing filters the list)."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(text)
    page.locator(f"#{elem_id} li[role=option]", has_text=text).first.click()


def generate(page, tab: str, prompt: str | None, steps: int = 3, size: int = 64) -> None:
    """Generate with `prompt` (None: the prompt as it is) at a small size and few steps."""
    if prompt is not None:
        page.fill(f"#{tab}_prompt textarea", prompt)
    set_slider(page, f"{tab}_steps", steps)
    set_slider(page, f"{tab}_width", size)
    set_slider(page, f"{tab}_height", size)
    page.click(f"#{tab}_generate")


def wait_for_gallery(page, tab: str, previous: str = "") -> str:
    info = page.locator(f"#{tab}_generation_info textarea")
    page.wait_for_function(
        "([sel, prev]) => { const t = document.querySelector(sel); return t && t.value && t.value !== prev; }",
        arg=[f"#{tab}_generation_info textarea", previous])
    page.wait_for_selector(f"#{tab}_gallery img")
    return info.input_value()


def wait_for_text(page, selector: str, text: str) -> str:
    """Waits until the element's text contains `text`; returns the text."""
    page.wait_for_function("([sel, text]) => { const e = document.querySelector(sel); "
                           "return e && e.innerText.includes(text); }", arg=[selector, text])
    return page.locator(selector).inner_text()
