"""Extensions written for A1111 (Gradio 3.41 UI code, A1111's javascript helpers) in a real browser
against a server with tiny models: the controls render and act (`_js`, `Component.update`), their
javascript runs with gradioApp()/onUiLoaded/get_uiCurrentTab/updateInput and fills a hidden textbox,
their AlwaysVisible values reach the job, their tab, settings section and problems show."""
from __future__ import annotations

import httpx
import pytest

from modules.plugins.manager import load_extensions
from tests.api_support import make_context, make_data_dir
from tests.browser_support import (
    ARGS,
    CHROMIUM,
    SHOTS,
    browser_or_skip,
    generate,
    open_tab,
    wait_for_gallery,
)
from tests.extensions_support import A1111_SURFACE, GRADIO3_SKETCH, GRADIO3_STYLE, write_extension
from tests.live_server import LiveServer
from webui.ui import gradio3_compat

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    sync_playwright = browser_or_skip()
    root = make_data_dir(tmp_path_factory.mktemp("ext-browser"))
    for name, files in (("surface", A1111_SURFACE), ("g3", GRADIO3_STYLE), ("sketchy", GRADIO3_SKETCH)):
        write_extension(root, name, files)
    ctx = make_context(root)
    load_extensions(ctx, run_installers=False, ui_environment=gradio3_compat.environment)
    SHOTS.mkdir(exist_ok=True)
    with LiveServer(ctx) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_function("() => window.uiLoadedCallbacksRan === true && window.g3Loaded === true")
        yield ctx, url, page
        browser.close()


def test_gradio3_controls_act_and_their_values_reach_the_job(app):
    ctx, url, page = app
    # the extension's javascript (onUiLoaded, gradioApp(), `> label > textarea`, get_uiCurrentTab,
    # updateInput) filled the hidden textbox, which Gradio 6 keeps in the page for it
    assert page.locator("#g3_txt2img_secret textarea").input_value() == "from-js-txt2img"
    page.click("#g3_txt2img_shout")  # `_js=`: runs in the browser only
    page.wait_for_function("() => document.querySelector('#g3_txt2img_word textarea').value === 'QUIET'")
    page.check("#g3_txt2img_enabled input")
    generate(page, "txt2img", "a red circle", steps=2)
    infotext = wait_for_gallery(page, "txt2img")
    assert "G3 word: QUIET" in infotext and "G3 secret: from-js-txt2img" in infotext
    page.click("#g3_txt2img_hide")  # an event handler returning gr.Textbox.update(visible=False)
    page.wait_for_function("() => { const e = document.querySelector('#g3_txt2img_word'); "
                           "return !e || getComputedStyle(e).display === 'none' || e.offsetParent === null; }")
    page.screenshot(path=str(SHOTS / "extensions-txt2img.png"), full_page=True)


def test_extension_tab_settings_section_and_problems(app):
    ctx, url, page = app
    open_tab(page, "tab_g3_tab")
    page.click("#g3_more")  # gr.Dropdown.update(choices=..., value=...) from a Gradio 3 handler
    page.wait_for_function("() => document.querySelector('#g3_out textarea').value === 'chose three'")
    open_tab(page, "tab_settings")
    # the extension's section is offered: as a tab button, or as an item of Gradio's overflow menu when
    # the sections' tabs do not fit in the window (Gradio may then show both, depending on the width)
    page.locator("button:visible", has_text="Surface test").first.wait_for()
    open_tab(page, "tab_extensions")
    table = page.locator("#extensions_installed_html").inner_text()
    assert "Untranslatable" in table and "sketch" in table and "Gradio 3 code translated" in table
    page.screenshot(path=str(SHOTS / "extensions-tab.png"), full_page=True)
    open_tab(page, "tab_txt2img")


def test_file_route_serves_extension_files_only(app):
    ctx, url, page = app
    js = ctx.paths.extensions_dir / "g3" / "javascript" / "g3.js"
    assert "onUiLoaded" in httpx.get(f"{url}/file={js}").text
    assert httpx.get(f"{url}/file=/etc/passwd").status_code == 404
    assert httpx.get(f"{url}/file={ctx.paths.config_file}").status_code == 404
