"""POST /sdapi/v1/depth2img on tiny real checkpoints: the depth checkpoint of the catalog is used beside
an ordinary loaded model, the user's depth map reaches the model, bad input is a 422 naming the field."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api_support import b64_image, gradient, make_context, png_b64, write_tiny_checkpoint
from webui.api import routes

API = "/sdapi/v1/depth2img"


def client_for(root) -> tuple:
    ctx = make_context(root)
    app = FastAPI()
    routes.install(app, ctx)
    return ctx, TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth-api")
    ckpts = root / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "plain", "tiny-v1", seed=1)
    write_tiny_checkpoint(ckpts, "tiny-depth", "tiny-v2-depth", seed=4)
    ctx, client = client_for(root)
    ctx.models.load("plain")
    return ctx, client


def body(**fields) -> dict:
    depth = gradient(64, 64).convert("L")
    return {"init_images": [png_b64(gradient(64, 64))], "depth_map": png_b64(depth), "prompt": "a room",
            "steps": 2, "seed": 5, "batch_size": 2, "sampler_name": "Euler", **fields}


def test_depth2img_uses_the_depth_checkpoint_beside_the_loaded_model(api):
    ctx, client = api
    r = client.post(API, json=body())
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"images", "depth_map", "info"} and len(out["images"]) == 2
    first = b64_image(out["images"][0])
    assert first.size == (64, 64) and "Depth map: user" in first.info["parameters"]
    info = json.loads(out["info"])
    assert info["seed"] == 5 and info["all_seeds"] == [5, 6] and info["depth_map"] == "user"
    assert b64_image(out["depth_map"]).mode == "L"
    assert ctx.models.current.info.model_name == "plain"  # the main model stays loaded


def test_the_depth_map_reaches_the_model(api):
    ctx, client = api
    flipped = gradient(64, 64).convert("L").transpose(0)  # mirrored left-right
    a = client.post(API, json=body()).json()["images"][0]
    b = client.post(API, json=body(depth_map=png_b64(flipped))).json()["images"][0]
    again = client.post(API, json=body()).json()["images"][0]
    pixels = [np.asarray(b64_image(x), dtype=np.int16) for x in (a, b, again)]
    assert np.array_equal(pixels[0], pixels[2]) and np.abs(pixels[0] - pixels[1]).max() > 0


@pytest.mark.parametrize("fields, field", [
    ({"init_images": []}, "init_images"),
    ({"init_images": ["not base64 at all"]}, "init_images"),
    ({"depth_map": "not base64 at all"}, "depth_map"),
    ({"sampler_name": "no such sampler"}, "sampler_name"),
    ({"denoising_strength": 1.5}, "denoising_strength"),
])
def test_bad_input_is_a_422_naming_the_field(api, fields, field):
    ctx, client = api
    r = client.post(API, json=body(**fields))
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"])


def test_without_a_depth_checkpoint_the_message_says_what_to_do(tmp_path):
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "plain", "tiny-v1")
    ctx, client = client_for(tmp_path)
    r = client.post(API, json=body())
    assert r.status_code == 422 and "depth checkpoint" in r.text and "Traceback" not in r.text
