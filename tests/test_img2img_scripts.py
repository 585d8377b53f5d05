"""The built-in img2img scripts (extensions-builtin/img2img-scripts): SD upscale, Loopback,
Outpainting mk2 and Poor man's outpainting, driven as A1111's API clients drive them (by title, with
script_args in A1111's order), and the overlapping-tile helpers they use."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules import images
from tests.api_support import b64_image, gradient, make_context, make_data_dir, png_b64
from webui.api import routes

API = "/sdapi/v1"
TITLES = ("sd upscale", "loopback", "outpainting mk2", "poor man's outpainting")


def test_tiles_round_trip_and_cover_the_image():
    image = gradient(300, 200)
    grid = images.split_grid(image, tile_w=128, tile_h=96, overlap=32)
    xs = [x for x, _w, _t in grid.tiles[0][2]]
    assert xs[0] == 0 and xs[-1] + 128 == 300 and all(b - a <= 128 - 32 for a, b in zip(xs, xs[1:], strict=False))
    assert grid.tiles[-1][0] + 96 == 200
    back = np.asarray(images.combine_grid(grid), dtype=np.int16)
    assert np.abs(back - np.asarray(image, dtype=np.int16)).max() <= 1


def test_tiles_blend_linearly_across_the_overlap():
    grid = images.split_grid(Image.new("RGB", (112, 64)), tile_w=64, tile_h=64, overlap=16)
    (_y, _h, row), = grid.tiles
    row[0][2] = Image.new("RGB", (64, 64), (0, 0, 0))
    row[1][2] = Image.new("RGB", (64, 64), (160, 160, 160))
    line = np.asarray(images.combine_grid(grid))[10, :, 0].astype(int)
    assert line[:48].max() == 0 and line[64:].min() == 160
    assert np.all(np.diff(line[48:64]) > 0)  # a ramp, no step


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from modules.plugins.manager import load_extensions
    from webui.ui import scripts_ui

    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("img2img-scripts")))
    ctx.opts.set("samples_save", False)
    load_extensions(ctx)
    scripts_ui.attach(ctx)
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False)


def img2img(client, script, args, init=None, **kw):
    body = {"init_images": [png_b64(init or gradient(64, 64))], "prompt": "a cat", "steps": 2, "width": 64,
            "height": 64, "seed": 7, "denoising_strength": 0.75, "script_name": script, "script_args": args, **kw}
    r = client.post(f"{API}/img2img", json=body)
    assert r.status_code == 200, r.text
    return [b64_image(x) for x in r.json()["images"]], json.loads(r.json()["info"])


@pytest.mark.slow  # loads every built-in extension
def test_listed_for_img2img_only_with_a1111_argument_counts(client):
    listed = client.get(f"{API}/scripts").json()
    assert set(TITLES) <= set(listed["img2img"]) and not set(TITLES) & set(listed["txt2img"])
    infos = {i["name"]: i for i in client.get(f"{API}/script-info").json() if i["is_img2img"]}
    assert {t: len(infos[t]["args"]) for t in TITLES} == {"sd upscale": 4, "loopback": 4, "outpainting mk2": 6,
                                                           "poor man's outpainting": 4}


@pytest.mark.slow  # loads every built-in extension
def test_sd_upscale_through_any_upscaler(client):
    for upscaler in (1, "Nearest"):  # A1111's radio index (1 = Lanczos after None), or a name
        out, info = img2img(client, "SD upscale", ["", 16, upscaler, 2.0])
        assert [im.size for im in out] == [(128, 128)]
        name = "Lanczos" if upscaler == 1 else "Nearest"
        assert f"SD upscale upscaler: {name}" in info["infotexts"][0] and "SD upscale overlap: 16" in info["infotexts"][0]
    bad = client.post(f"{API}/img2img", json={"init_images": [png_b64(gradient())], "script_name": "SD upscale",
                                              "script_args": ["", 16, "no such upscaler", 2.0], "steps": 1,
                                              "width": 64, "height": 64})
    assert 400 <= bad.status_code < 500 and "no such upscaler" in bad.text


@pytest.mark.slow  # loads every built-in extension
def test_loopback_walks_the_denoising_strength_to_the_final_one(client):
    out, info = img2img(client, "Loopback", [3, 0.25, "Linear", "None"])
    assert len(out) == 1 + 3  # the history grid, then each loop's image
    strengths = [float(t.split("Denoising strength: ")[1].split(",")[0]) for t in info["infotexts"][1:]]
    assert strengths == [0.75, 0.5, 0.25]
    assert "Denoising curve: Linear" in info["infotexts"][1] and "Final denoising strength: 0.25" in info["infotexts"][1]
    assert out[0].size == (3 * 64, 64)


@pytest.mark.slow  # loads every built-in extension
def test_outpainting_mk2_grows_the_chosen_sides_and_keeps_the_picture(client):
    init = gradient(64, 64)
    out, _ = img2img(client, "Outpainting mk2", ["", 16, 4, ["left", "down"], 1.0, 0.05], init=init)
    assert out[0].size == (80, 80)
    # the old picture sits at x 16..80, y 0..64; away from the blurred seams it is kept exactly
    assert np.array_equal(np.asarray(out[0])[0:40, 40:80], np.asarray(init)[0:40, 24:64])
    assert np.asarray(out[0])[72:, :].std() > 0 and np.asarray(out[0])[:, :8].std() > 0


@pytest.mark.slow  # loads every built-in extension
def test_poor_mans_outpainting_paints_the_new_border_only(client):
    init = gradient(64, 64)
    out, _ = img2img(client, "Poor man's outpainting", [16, 2, 1, ["right"]], init=init)
    assert out[0].size == (128, 64)  # 64 + 16 rounded up to a multiple of 64, as A1111
    assert np.array_equal(np.asarray(out[0])[:, :32], np.asarray(init)[:, :32])
    assert np.asarray(out[0])[:, 100:].std() > 0  # painted, not left black


@pytest.mark.slow  # a live server with every built-in extension, driven through the web UI's endpoint
def test_each_script_through_the_web_ui(tmp_path_factory):
    from gradio_client import Client, handle_file

    from modules.plugins.manager import load_extensions
    from tests.live_server import LiveServer

    root = make_data_dir(tmp_path_factory.mktemp("img2img-scripts-ui"))
    ctx = make_context(root)
    ctx.opts.set("samples_save", False)
    load_extensions(ctx, run_installers=False)
    path = root / "init.png"
    gradient(64, 64).save(path)
    runner = ctx.services.scripts.runner(True)
    with LiveServer(ctx) as url:
        client = Client(url, verbose=False)
        # radios with type="index" take their choice's label in the UI (the script gets the index)
        cases = {"SD upscale": (["", 16, "Lanczos", 2.0], (128, 128)), "Loopback": ([2, 0.5, "Linear", "None"], (64, 64)),
                 "Outpainting mk2": (["", 16, 4, ["right"], 1.0, 0.05], (80, 64)),
                 "Poor man's outpainting": ([16, 2, "original", ["down"]], (64, 128))}
        for title, (args, size) in cases.items():
            script = next(s for s in runner.scripts if s.title() == title)
            values = {f"script_args_{script.args_from + i}": v for i, v in enumerate(args)
                      if not (i == 0 and v == "")}  # the info HTML is display-only
            gallery, infotext, *_ = client.predict(prompt="x", steps=2, width=64, height=64, seed=3,
                                                   init_img=handle_file(str(path)), script_args_0=title,
                                                   api_name="/img2img", **values)
            assert Image.open(gallery[-1]["image"]).size == size, title
            assert "Steps: 2" in infotext, title
