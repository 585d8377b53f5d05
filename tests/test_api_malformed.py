"""A broken client's requests: a table of malformed bodies sent to the API. Each must be answered
with a 4xx naming the field at fault (never a 500), change nothing it should not, and leave a server
that keeps serving."""
from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from tests.api_support import b64_image, gradient, make_context, make_data_dir, png_b64
from webui.api import routes

API = "/sdapi/v1"
SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 3}
GOOD = png_b64(gradient(64, 64))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("malformed")))
    ctx.opts.set("sd_model_checkpoint", "tiny-a.safetensors")
    return ctx


@pytest.fixture(scope="module")
def client(ctx):
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False)


def raw(text: str) -> dict:
    """A request body written by hand, as a broken client sends it (NaN, lone surrogates...)."""
    return {"content": text.encode("utf-8"), "headers": {"content-type": "application/json"}}


def named_fields(response) -> list[str]:
    """The fields a 422 names, as dotted names (FastAPI's loc without 'body')."""
    detail = response.json()["detail"]
    return [".".join(str(x) for x in e["loc"] if x != "body") for e in detail] if isinstance(detail, list) else []


# route, request kwargs, the field the answer must name
CASES = [
    ("txt2img", raw('{"prompt": "a\\ud800b", "steps": 2}'), "prompt"),
    ("txt2img", raw('{"negative_prompt": "\\udfff", "steps": 2}'), "negative_prompt"),
    ("txt2img", raw('{"styles": ["ok", "\\ud800"], "steps": 2}'), "styles.1"),
    ("txt2img", {"json": {"prompt": "x" * 1_000_000}}, "prompt"),
    ("txt2img", {"json": {"negative_prompt": "y" * 100_000}}, "negative_prompt"),
    ("txt2img", raw('{"cfg_scale": NaN}'), "cfg_scale"),
    ("txt2img", raw('{"cfg_scale": Infinity}'), "cfg_scale"),
    ("txt2img", raw('{"subseed_strength": -Infinity}'), "subseed_strength"),
    ("txt2img", raw('{"enable_hr": true, "hr_scale": NaN}'), "hr_scale"),
    ("txt2img", raw('{"eta": NaN}'), "eta"),
    ("txt2img", {"json": {"steps": 0}}, "steps"),
    ("txt2img", {"json": {"width": 123456}}, "width"),
    ("txt2img", {"json": {"batch_size": 10**6}}, "batch_size"),
    ("txt2img", {"json": {"seed": 2**80}}, "seed"),
    ("txt2img", {"json": {"sampler_name": "Euler zz"}}, "sampler_name"),
    ("txt2img", raw('{"override_settings": {"rho": NaN}}'), "override_settings.rho"),
    ("txt2img", {"json": {"override_settings": {"outdir_txt2img_samples": "/etc"}}},
     "override_settings.outdir_txt2img_samples"),
    ("txt2img", {"json": {"override_settings": {"outdir_samples": "../../outside"}}},
     "override_settings.outdir_samples"),
    ("txt2img", raw('{"override_settings": {"emphasis": "\\ud800"}}'), "override_settings.emphasis"),
    ("img2img", raw(f'{{"init_images": ["{GOOD}"], "denoising_strength": Infinity}}'), "denoising_strength"),
    ("img2img", {"json": {"init_images": [GOOD], "mask_blur": -3}}, "mask_blur"),
    ("img2img", {"json": {"init_images": [GOOD], "inpainting_fill": 9}}, "inpainting_fill"),
    ("extra-single-image", raw(f'{{"image": "{GOOD}", "upscaler_1": "Lanczos", "upscaling_resize": NaN}}'),
     "upscaling_resize"),
    ("extra-single-image", {"json": {"image": GOOD, "upscaler_1": "Lanczos", "resize_mode": 7}}, "resize_mode"),
    ("options", raw('{"rho": NaN}'), "rho"),
    ("options", raw('{"s_noise": Infinity}'), "s_noise"),
    ("options", {"json": {"outdir_samples": "/etc"}}, "outdir_samples"),
    ("options", {"json": {"outdir_img2img_grids": "../elsewhere"}}, "outdir_img2img_grids"),
    ("options", raw('{"samples_filename_pattern": "\\ud800"}'), "samples_filename_pattern"),
]


@pytest.mark.parametrize("route, kwargs, field", CASES, ids=[f"{r}-{f}-{i}" for i, (r, _, f) in enumerate(CASES)])
def test_malformed_requests_are_refused_naming_the_field(client, ctx, route, kwargs, field):
    before = ctx.paths.config_file.read_text() if ctx.paths.config_file.exists() else None
    r = client.post(f"{API}/{route}", **kwargs)
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert field in named_fields(r), r.text[:300]
    after = ctx.paths.config_file.read_text() if ctx.paths.config_file.exists() else None
    assert after == before  # nothing was written
    assert client.get(f"{API}/progress").status_code == 200


def test_the_server_keeps_serving_after_the_table(client):
    r = client.post(f"{API}/txt2img", json={"prompt": "still fine", **SMALL})
    assert r.status_code == 200 and len(r.json()["images"]) == 1


def test_output_folders_inside_the_data_dir_are_accepted(client, ctx):
    r = client.post(f"{API}/options", json={"outdir_samples": "outputs/mine"})
    assert r.status_code == 200, r.text
    assert json.loads(ctx.paths.config_file.read_text())["outdir_samples"] == "outputs/mine"
    client.post(f"{API}/options", json={"outdir_samples": ""})


def test_a_mask_of_another_size_is_resized_as_a1111_does(client):
    init = gradient(64, 64)
    mask = Image.new("L", (128, 32), 0)  # another size and aspect: stretched onto the image
    mask.paste(255, (64, 0, 128, 32))  # the right half
    r = client.post(f"{API}/img2img", json={**SMALL, "prompt": "m", "init_images": [png_b64(init)],
                                            "mask": png_b64(mask), "mask_blur": 0, "inpaint_full_res": False})
    assert r.status_code == 200, r.text
    out = b64_image(r.json()["images"][0]).convert("RGB")
    assert out.size == (64, 64)
    assert list(out.crop((0, 0, 28, 64)).getdata()) == list(init.crop((0, 0, 28, 64)).getdata())  # left kept


def test_a_lone_surrogate_never_reaches_the_png_writer():
    from modules import image_metadata
    data = image_metadata.encode_image(gradient(8, 8), "png", "a\ud800b", {"note": "\udfff"})
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def auth_client(tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("malformed-auth"), "--api-auth", "alice:pw")
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("kwargs", [raw("{not json"), {"json": {"steps": "many"}}, {"json": [1, 2]}, raw("")])
def test_without_credentials_a_malformed_body_is_401_not_422(auth_client, kwargs):
    r = auth_client.post(f"{API}/txt2img", **kwargs)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Basic"
    assert auth_client.get("/openapi.json").status_code == 401  # the API's description too
    r = auth_client.post(f"{API}/txt2img", auth=("alice", "pw"), **kwargs)
    assert r.status_code == 422  # with credentials, the body is read and refused
