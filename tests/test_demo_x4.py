"""The shipped SD x4 demo through the app's HTTP API (and once in the browser): on scenes it never
saw it beats bicubic upscaling by >= 1 dB PSNR and keeps colours and positions, its tiles leave no
seams, and it serves hires fix.

models/Stable-diffusion/demo-x4 is trained by `python -m modules.training.demo_scenes` on synthetic
scenes of shapes hanging before a wall and a floor (modules/training/scenes.py). The servers here hold
copies of the demos and nothing else, as a new user has.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.training import scene_eval as se
from modules.training import scene_metrics as sm
from modules.training import scenes
from tests.api_support import b64_image, png_b64
from tests.demo_support import demo_api, demo_server, page_image

pytestmark = pytest.mark.slow  # the demo at 64 px: ~30 s for the module on one CPU thread

MAX_MOVE = 2.0  # px of 64: half a pixel of the 16 px input
DEMOS = ("demo-x4", "demo")  # the v1 demo for the hires-fix test


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A server over a data dir that holds only the demos."""
    return demo_api(tmp_path_factory.mktemp("x4-demo"), DEMOS)


def x4(client, image: Image.Image) -> np.ndarray:
    r = client.post("/sdapi/v1/extra-single-image", json={"image": png_b64(image), "upscaler_1": "SD x4",
                                                          "upscaling_resize": 4})
    assert r.status_code == 200, r.text
    return np.asarray(b64_image(r.json()["image"]).convert("RGB"))


@pytest.fixture(scope="module")
def held_out(api):
    """[(scene, truth 64 px, x4 of its 16 px copy through Extras)] for 8 scenes no training step drew."""
    ctx, client = api
    out = []
    for scene in se.held_out_scenes(8):
        truth = scenes.render(scene, 64)
        out.append((scene, truth, x4(client, se.low_res(truth))))
    return out


def test_x4_keeps_colours_and_positions_on_held_out_scenes(held_out):
    """The visible shapes keep their colour, and their pixels of that colour are centred where the shape
    is (within MAX_MOVE px of 64). The upscale is sampled with a new seed each call (Extras has none):
    over 6 seeds the shipped demo kept all 78 visible shapes (an earlier model missed 2 of 78: a yellow
    triangle came out orange, a square 3 px off), so 2 of these 13 may miss."""
    misplaced = []
    for scene, truth, up in held_out:
        assert up.shape == truth.shape
        for thing, mask in se.visible_things(scene):
            kept = sm.region_color(up, mask) == thing.color
            moved = sm.distance(sm.centre(mask), sm.centre(sm.color_mask(up, thing.color) & mask))
            if not kept or moved > MAX_MOVE:
                misplaced.append((thing, kept, round(moved, 2)))
    print("misplaced:", misplaced)
    assert len(misplaced) <= 2


def test_x4_beats_bicubic_by_1_db_on_held_out_scenes(held_out):
    """Measured on these 8 scenes over 6 seed sets: 29.98-31.44 dB against bicubic's 27.96 (+2.0 at the
    worst); on 20 held-out scenes (README) 29.91-30.08 against 28.32."""
    ours = [sm.psnr(up, truth) for _, truth, up in held_out]
    cubic = [sm.psnr(se.bicubic(se.low_res(truth)), truth) for _, truth, _ in held_out]
    print(f"PSNR x4 {np.mean(ours):.2f} dB, bicubic {np.mean(cubic):.2f} dB:",
          [f"{o:.1f}/{c:.1f}" for o, c in zip(ours, cubic, strict=True)])
    assert np.mean(ours) >= np.mean(cubic) + 1.0


def _steps(image: np.ndarray) -> np.ndarray:
    """[W - 1]: the step between neighbouring columns, averaged over colours, median over the rows: a
    seam runs along a whole tile border, a shape's edge covers a few rows only."""
    return np.median(np.abs(np.diff(image.astype(np.float32), axis=1)).mean(axis=2), axis=0)


def _away_from_edges(truth: np.ndarray) -> np.ndarray:
    """bool [W - 1]: column steps more than 2 px from any full-height edge of the true picture (the wall
    line, seen from the side; a sampled edge may fall a pixel or two off)."""
    return np.convolve(_steps(truth) >= 1.0, np.ones(5), "same") == 0


def _border_steps(image: np.ndarray, reference: np.ndarray, truth: np.ndarray, lo: int, hi: int) -> float:
    """The largest step of `image` beyond `reference`'s between columns lo..hi (all [H, W, 3]), away
    from the picture's own edges."""
    return float((_steps(image) - _steps(reference))[lo:hi][_away_from_edges(truth)[lo:hi]].max())


def test_x4_tiles_leave_no_seams_on_a_larger_picture(api):
    """A 48x48 input in 32 px tiles with 8 px overlap (tiles start at 0 and 16 each way; blended over
    low-res 16..32, output columns 64..128): across that band, and the same band of rows, the tiled
    output steps from one column (row) to the next no more than the untiled output does there."""
    ctx, client = api
    scene = se.held_out_scenes(9)[-1]
    truth = scenes.render(scene, 192)
    low = se.low_res(truth)
    with ctx.opts.override({"tiled_upscale_tile_size": 1024}):
        whole = x4(client, low)
    with ctx.opts.override({"tiled_upscale_tile_size": 32, "tiled_upscale_tile_overlap": 8}):
        tiled = x4(client, low)
    assert tiled.shape == whole.shape == truth.shape
    turned = [im.transpose(1, 0, 2) for im in (tiled, whole, truth)]
    extra = [_border_steps(tiled, whole, truth, 60, 132), _border_steps(*turned, 60, 132)]
    print("largest extra step across the tile borders (columns, rows):", [round(e, 2) for e in extra])
    assert max(extra) < 2.0
    column = 96 + int(np.argmax(_away_from_edges(truth)[96:132]))
    seam = np.clip(tiled.astype(np.int16) + np.where(np.arange(192) > column, 6, 0)[None, :, None], 0, 255)
    assert _border_steps(seam, whole, truth, 60, 132) >= 2.0  # the criterion sees a seam of 6 levels


def test_x4_demo_is_listed_and_serves_the_hires_fix(api):
    ctx, client = api
    listed = {u["name"]: u for u in client.get("/sdapi/v1/upscalers").json()}
    assert listed["SD x4"]["model_path"].endswith("demo-x4.safetensors")
    r = client.post("/sdapi/v1/txt2img", json={
        "prompt": "a red circle", "seed": 3, "batch_size": 4, "steps": 20, "width": 32, "height": 32,
        "sampler_name": "DPM++ 2M", "enable_hr": True, "hr_upscaler": "SD x4", "hr_scale": 2,
        "denoising_strength": 0.3, "override_settings": {"sd_model_checkpoint": "demo"}})
    assert r.status_code == 200, r.text
    images = [np.asarray(b64_image(b).convert("RGB")) for b in r.json()["images"]]
    images = [im for im in images if im.shape == (64, 64, 3)]
    from modules.training import image_metrics
    red = sum(image_metrics.dominant_color(im) == "red" for im in images)
    print(f"hires fix with SD x4: red in {red}/{len(images)}")
    assert len(images) == 4 and red >= 3


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory):
    """(ctx, url, page) of a server over the x4 demo alone (demo_support.demo_server)."""
    yield from demo_server(tmp_path_factory.mktemp("x4-demo-browser"), ("demo-x4",))


@pytest.mark.browser
def test_the_browser_upscales_with_the_x4_demo_in_extras(demo_page, tmp_path):
    """Extras with 'SD x4' and no SD 2 checkpoint: the demo upscales 16 -> 64 px, shapes keep their
    colours and places."""
    from tests.browser_support import choose, open_tab, set_slider, wait_for_gallery

    ctx, url, page = demo_page
    scene = se.held_out_scenes(1)[0]
    truth = scenes.render(scene, 64)
    low_path = tmp_path / "low.png"
    se.low_res(truth).save(low_path)
    open_tab(page, "tab_extras")
    page.set_input_files("#extras_image input[type=file]", str(low_path))
    page.wait_for_selector("#extras_image img")
    choose(page, "extras_upscaler_1", "SD x4")
    set_slider(page, "extras_upscaling_resize", 4)
    page.click("#extras_generate")
    info = wait_for_gallery(page, "extras")
    upscaled = page_image(page, url, "#extras_gallery img")
    assert "Postprocess upscaler: SD x4" in info
    assert upscaled.shape == truth.shape
    for thing, mask in se.visible_things(scene):
        assert sm.region_color(upscaled, mask) == thing.color
        assert sm.distance(sm.centre(mask), sm.centre(sm.color_mask(upscaled, thing.color) & mask)) <= MAX_MOVE

