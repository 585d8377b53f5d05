"""The web UI in a real browser (Playwright + Debian's chromium) against a server with tiny models.

Screenshots of each tab are kept as artifacts in a temp dir (printed at the end), not committed.
"""
from __future__ import annotations

import pytest
from PIL import Image

from tests.api_support import gradient, make_context
from tests.browser_support import SHOTS, generate, open_tab, set_slider, wait_for_gallery

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def app(browser_app):
    return browser_app


def test_txt2img_generates_an_image_with_its_info(app):
    ctx, url, page = app
    generate(page, "txt2img", "a red circle")
    infotext = wait_for_gallery(page, "txt2img")
    assert infotext.startswith("a red circle") and "Steps: 3" in infotext
    page.screenshot(path=str(SHOTS / "txt2img.png"), full_page=True)
    page.click("#txt2img_send_to_extras")
    page.wait_for_selector("#extras_image img")
    page.screenshot(path=str(SHOTS / "extras.png"), full_page=True)
    open_tab(page, "tab_txt2img")


def test_png_info_sends_parameters_back_to_txt2img(app, tmp_path):
    ctx, url, page = app
    previous = page.locator("#txt2img_generation_info textarea").input_value()  # before: a fast job may be done
    generate(page, "txt2img", "a (blue:1.2) square", steps=4)
    infotext = wait_for_gallery(page, "txt2img", previous)
    png = tmp_path / "out.png"
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    Image.new("RGB", (64, 64)).save(png, pnginfo=info)
    page.fill("#txt2img_prompt textarea", "something else")
    open_tab(page, "tab_pnginfo")
    page.set_input_files("#pnginfo_image input[type=file]", str(png))
    page.wait_for_function("() => document.querySelector('#pnginfo_generation_info textarea').value.length > 0")
    page.screenshot(path=str(SHOTS / "pnginfo.png"), full_page=True)
    page.click("#pnginfo_send_txt2img")
    page.wait_for_function("() => document.querySelector('#txt2img_prompt textarea').value === 'a (blue:1.2) square'")
    assert page.locator("#txt2img_steps input[type=number]").input_value() == "4"


def test_inpaint_with_a_drawn_mask(app):
    ctx, url, page = app
    src = ctx.paths.data_dir / "inpaint-src.png"
    gradient(64, 64).save(src)
    open_tab(page, "tab_img2img")
    open_tab(page, "img2img_inpaint_tab")
    page.set_input_files("#img2maskimg input[type=file]", str(src))
    canvas = page.locator("#img2maskimg canvas").first
    canvas.wait_for()
    box = canvas.bounding_box()
    page.locator("#img2maskimg button[aria-label*='rush'], #img2maskimg button[title*='rush']").first.click()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    generate(page, "img2img", "inpaint here", steps=2)
    infotext = wait_for_gallery(page, "img2img")
    assert "Mask blur" in infotext
    page.screenshot(path=str(SHOTS / "inpaint.png"), full_page=True)


def test_text_file_as_image_shows_an_error_and_the_next_job_works(app, tmp_path):
    ctx, url, page = app
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all")
    open_tab(page, "tab_img2img")
    open_tab(page, "img2img_img2img_tab")
    page.set_input_files("#img2img_image input[type=file]", str(bad))
    page.click("#img2img_generate")
    toast = page.locator(".toast-body").first
    toast.wait_for(state="visible", timeout=60_000)
    page.screenshot(path=str(SHOTS / "bad-upload.png"), full_page=True)
    message = toast.inner_text()
    assert "notes.png" in message and "not an image" in message and "Traceback" not in message
    open_tab(page, "tab_txt2img")
    previous = page.locator("#txt2img_generation_info textarea").input_value()
    generate(page, "txt2img", "after the error")
    assert wait_for_gallery(page, "txt2img", previous).startswith("after the error")


def test_interrupt_stops_a_long_run(app):
    ctx, url, page = app
    open_tab(page, "tab_txt2img")
    previous = page.locator("#txt2img_generation_info textarea").input_value()
    set_slider(page, "txt2img_batch_size", 4)  # long enough on a quiet machine too
    generate(page, "txt2img", "a long run", steps=150, size=256)
    page.wait_for_function("() => !!document.querySelector('#txt2img_progress .progress')")
    page.click("#txt2img_interrupt")
    infotext = wait_for_gallery(page, "txt2img", previous)
    assert "Steps: 150" in infotext
    note = page.locator("#txt2img_html_info #interrupted").inner_text()
    step = int(note.split("step ")[1].split(" ")[0])
    assert step < 150, note
    set_slider(page, "txt2img_batch_size", 1)


def test_setting_persists_across_a_restart(app):
    ctx, url, page = app
    open_tab(page, "tab_settings")
    page.screenshot(path=str(SHOTS / "settings.png"), full_page=True)
    open_tab(page, "settings_saving")
    box = page.locator("#setting_jpeg_quality input[type=number]")
    box.fill("63")
    box.press("Enter")
    page.click("#settings_submit")
    page.wait_for_function("() => document.querySelector('#settings_result').innerText.includes('jpeg_quality')")
    restarted = make_context(ctx.paths.data_dir)
    assert restarted.opts.jpeg_quality == 63
