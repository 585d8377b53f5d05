"""A real server (uvicorn on a free loopback port, --nowebui) driven with `requests` the way public
clients (webuiapi, bots, scripts) do: list, switch model, generate, inpaint, read PNG info, poll
progress during a run, interrupt it."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import requests

from tests.api_support import b64_image, gradient, make_context, make_data_dir, png_b64
from tests.live_server import LiveServer
from tests.test_api_generation import square_mask

TIMEOUT = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("server-data")), "--nowebui")
    with LiveServer(ctx) as url:
        yield url + "/sdapi/v1", ctx


def test_a_client_session_end_to_end(server):
    api, ctx = server
    s = requests.Session()
    assert s.get(f"{api}/scripts", timeout=TIMEOUT).json() == {"txt2img": [], "img2img": []}
    models = {m["model_name"]: m["title"] for m in s.get(f"{api}/sd-models", timeout=TIMEOUT).json()}
    r = s.post(f"{api}/options", json={"sd_model_checkpoint": models["tiny-b"]}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert s.get(f"{api}/options", timeout=TIMEOUT).json()["sd_model_checkpoint"] == models["tiny-b"]

    r = s.post(f"{api}/txt2img", json={"prompt": "a lighthouse", "steps": 3, "width": 64, "height": 64,
                                       "seed": 7, "sampler_name": "Euler a", "scheduler": "automatic"},
               timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    generated = r.json()["images"][0]
    assert json.loads(r.json()["info"])["sd_model_name"] == "tiny-b"

    r = s.post(f"{api}/img2img", json={"prompt": "a boat", "init_images": [generated], "steps": 3,
                                       "mask": png_b64(square_mask()), "mask_blur": 2, "width": 64, "height": 64,
                                       "denoising_strength": 0.8, "inpainting_fill": 1}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    inpainted = b64_image(r.json()["images"][0])
    assert inpainted.size == (64, 64) and "Mask blur: 2" in inpainted.info["parameters"]
    before = np.asarray(b64_image(generated).convert("RGB"))
    assert np.array_equal(np.asarray(inpainted.convert("RGB"))[:8], before[:8])  # far from the mask

    r = s.post(f"{api}/png-info", json={"image": generated}, timeout=TIMEOUT)
    params = r.json()["parameters"]
    assert params["Prompt"] == "a lighthouse" and params["Model"] == "tiny-b" and params["Seed"] == "7"


def test_nowebui_serves_only_the_api_and_the_docs(server):
    api, _ = server
    root = api.removesuffix("/sdapi/v1")
    assert requests.get(root + "/", timeout=TIMEOUT).status_code == 404
    assert requests.get(root + "/docs", timeout=TIMEOUT).status_code == 200
    assert "/sdapi/v1/txt2img" in requests.get(root + "/openapi.json", timeout=TIMEOUT).json()["paths"]


def test_progress_during_a_run_then_interrupt(server):
    api, _ = server
    result: dict = {}

    def generate():
        t0 = time.time()
        result["response"] = requests.post(f"{api}/txt2img", json={
            "prompt": "long", "steps": 1000, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"},
            timeout=TIMEOUT)
        result["seconds"] = time.time() - t0

    thread = threading.Thread(target=generate)
    thread.start()
    seen_steps, preview = [], None
    deadline = time.time() + 30
    while time.time() < deadline and (len(set(seen_steps)) < 3 or preview is None):
        body = requests.get(f"{api}/progress", timeout=5).json()
        if body["state"]["job"] == "txt2img" and body["state"]["sampling_step"] > 0:
            seen_steps.append(body["state"]["sampling_step"])
            assert body["state"]["sampling_steps"] == 1000 and 0 < body["progress"] < 1
            preview = preview or body["current_image"]
        time.sleep(0.05)
    assert len(set(seen_steps)) >= 3 and seen_steps == sorted(seen_steps)
    assert preview is not None and b64_image(preview).size[0] > 0

    interrupted_at = time.time()
    assert requests.post(f"{api}/interrupt", timeout=5).json() == {}
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    response = result["response"]
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1  # what was done so far
    assert time.time() - interrupted_at < 10
    assert requests.get(f"{api}/progress", timeout=5).json()["state"]["job"] == ""


def test_bad_requests_leave_the_server_running(server):
    api, _ = server
    for path, body in (("txt2img", b'{"steps": '), ("img2img", b'{"init_images": ["@@@"]}'),
                       ("png-info", b'{"image": "http://127.0.0.1/x.png"}'), ("options", b'[1]')):
        r = requests.post(f"{api}/{path}", data=body, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
        assert r.status_code in (400, 422), (path, r.status_code, r.text)
        assert "Traceback" not in r.text
    assert requests.get(f"{api}/progress", timeout=5).status_code == 200
    big = png_b64(gradient(8, 8))
    r = requests.post(f"{api}/img2img", json={"init_images": [big], "width": 100000}, timeout=TIMEOUT)
    assert r.status_code == 422


@pytest.mark.slow  # building the Gradio UI takes ~30 s on a shared 2-core machine
def test_api_next_to_the_ui_behind_api_auth(tmp_path):
    """--api with the UI: the routes are registered before Gradio is mounted at "/" (else they
    would 404), and --api-auth guards them while the UI page stays Gradio's business."""
    ctx = make_context(tmp_path, "--api-auth", "user:pa:ss")
    with LiveServer(ctx) as url:
        assert requests.get(f"{url}/sdapi/v1/progress", timeout=TIMEOUT).status_code == 401
        r = requests.get(f"{url}/sdapi/v1/progress", auth=("user", "pa:ss"), timeout=TIMEOUT)
        assert r.status_code == 200 and r.json()["state"]["job"] == ""
        assert requests.get(f"{url}/sdapi/v1/sd-models", auth=("user", "wrong"), timeout=TIMEOUT).status_code == 401
        page = requests.get(f"{url}/", timeout=TIMEOUT)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
