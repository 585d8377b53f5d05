"""The /sdapi/v1 routes through FastAPI's TestClient: lists, options and model switching, progress,
interrupt/skip, auth, extras, and every kind of bad input (never a 500, never a dead server).

Generation itself is in test_api_generation.py; a real server in test_api_server.py.
"""
from __future__ import annotations

import base64
import json
import random
import shutil
import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from tests.api_support import b64_image, gradient, make_context, make_data_dir, png_b64
from webui.api import routes

API = "/sdapi/v1"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("api-data"))


@pytest.fixture(scope="module")
def ctx(data_dir):
    return make_context(data_dir)


@pytest.fixture(scope="module")
def client(ctx):
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False)


def assert_422(response, *loc):
    assert response.status_code == 422, response.text
    body = response.json()
    if loc:
        locs = [tuple(e["loc"]) for e in body["detail"]]
        assert ("body", *loc) in locs, locs
    return body


# --- lists ---------------------------------------------------------------------------------------

def test_samplers_and_schedulers_use_a1111_names(client):
    samplers = {s["name"]: s for s in client.get(f"{API}/samplers").json()}
    assert {"Euler a", "Euler", "DPM++ 2M", "DDIM"} <= set(samplers)
    assert "k_euler_a" in samplers["Euler a"]["aliases"]
    assert samplers["DPM++ 2M"]["options"]["scheduler"] == "karras"
    schedulers = {s["name"]: s for s in client.get(f"{API}/schedulers").json()}
    assert schedulers["automatic"]["label"] == "Automatic"
    assert schedulers["karras"]["default_rho"] == 7.0 and schedulers["karras"]["need_inner_model"] is False
    assert schedulers["uniform"]["need_inner_model"] is True


def test_upscaler_lists(client):
    names = [u["name"] for u in client.get(f"{API}/upscalers").json()]
    assert names[:3] == ["None", "Lanczos", "Nearest"]
    latent = [m["name"] for m in client.get(f"{API}/latent-upscale-modes").json()]
    assert latent[0] == "Latent" and "Latent (nearest-exact)" in latent


def test_sd_models_lists_the_checkpoints_with_titles_hashes_and_configs(client, data_dir):
    items = client.get(f"{API}/sd-models").json()
    by_name = {m["model_name"]: m for m in items}
    assert set(by_name) >= {"tiny-a", "tiny-b", "tiny-inpaint"}
    a = by_name["tiny-a"]
    assert a["hash"] == a["sha256"][:10] and a["title"] == f"tiny-a.safetensors [{a['hash']}]"
    assert a["filename"].endswith("tiny-a.safetensors") and a["config"].endswith("tiny-a.yaml")


def test_refresh_checkpoints_and_vae_find_new_files(client, data_dir):
    ckpts = data_dir / "models" / "Stable-diffusion"
    shutil.copy(ckpts / "tiny-a.safetensors", ckpts / "copied.safetensors")
    shutil.copy(ckpts / "tiny-a.safetensors", data_dir / "models" / "VAE" / "extra-vae.safetensors")
    try:
        assert "copied" not in [m["model_name"] for m in client.get(f"{API}/sd-models").json()]
        assert client.post(f"{API}/refresh-checkpoints").status_code == 200
        assert "copied" in [m["model_name"] for m in client.get(f"{API}/sd-models").json()]
        assert client.post(f"{API}/refresh-vae").status_code == 200
        vaes = client.get(f"{API}/sd-vae").json()
        assert {"model_name": "extra-vae.safetensors",
                "filename": str((data_dir / "models" / "VAE" / "extra-vae.safetensors").resolve())} in vaes
    finally:
        (ckpts / "copied.safetensors").unlink()
        (data_dir / "models" / "VAE" / "extra-vae.safetensors").unlink()
        client.post(f"{API}/refresh-checkpoints")
        client.post(f"{API}/refresh-vae")


def test_lists_of_absent_parts_are_empty_in_a1111_shapes(client):
    assert client.get(f"{API}/scripts").json() == {"txt2img": [], "img2img": []}
    assert client.get(f"{API}/script-info").json() == []
    assert client.get(f"{API}/extensions").json() == []
    assert client.get(f"{API}/embeddings").json() == {"loaded": {}, "skipped": {}}
    assert client.get(f"{API}/prompt-styles").json() == []
    assert client.get(f"{API}/loras").json() == []


def test_styles_loras_and_embeddings_come_from_their_databases(client, ctx, tmp_path):
    from modules.embeddings import EmbeddingDatabase
    from modules.lora.network import LoraDatabase
    from modules.styles import StyleDatabase

    (tmp_path / "styles.csv").write_text('name,prompt,negative_prompt\nphoto,"{prompt}, 35mm",blurry\n')
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "ink.safetensors").write_bytes(b"listed by name; read only when used")
    ctx.services.styles = StyleDatabase(tmp_path / "styles.csv")
    ctx.services.lora = LoraDatabase(tmp_path / "lora")
    ctx.services.embeddings = EmbeddingDatabase(tmp_path / "embeddings")
    try:
        assert client.get(f"{API}/prompt-styles").json() == [
            {"name": "photo", "prompt": "{prompt}, 35mm", "negative_prompt": "blurry"}]
        loras = client.get(f"{API}/loras").json()
        assert [(x["name"], x["alias"]) for x in loras] == [("ink", "ink")]
        assert loras[0]["path"].endswith("ink.safetensors")
        assert client.get(f"{API}/embeddings").json() == {"loaded": {}, "skipped": {}}
        assert client.post(f"{API}/refresh-embeddings").status_code == 200
    finally:
        ctx.services.styles = ctx.services.lora = ctx.services.embeddings = None


def test_memory_and_cmd_flags(client, data_dir):
    memory = client.get(f"{API}/memory").json()
    assert memory["ram"]["used"] > 0 and memory["ram"]["total"] >= memory["ram"]["used"]
    assert "error" in memory["cuda"] or "system" in memory["cuda"]
    flags = client.get(f"{API}/cmd-flags").json()
    assert flags["api"] is True and flags["data_dir"] == str(data_dir)


# --- options and model switching -----------------------------------------------------------------

def test_get_options_has_a1111_keys(client):
    options = client.get(f"{API}/options").json()
    for key in ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", "samples_format", "eta_ancestral"):
        assert key in options


def test_post_options_sets_and_saves(client, ctx):
    r = client.post(f"{API}/options", json={"jpeg_quality": 55, "samples_format": "webp"})
    assert r.status_code == 200, r.text
    assert client.get(f"{API}/options").json()["jpeg_quality"] == 55
    saved = json.loads(ctx.paths.config_file.read_text())
    assert saved["jpeg_quality"] == 55 and saved["samples_format"] == "webp"
    client.post(f"{API}/options", json={"samples_format": "png"})


@pytest.mark.parametrize("body, loc", [
    ({"no_such_setting": 1}, ("no_such_setting",)),
    ({"jpeg_quality": "high"}, ("jpeg_quality",)),
    ({"jpeg_quality": 1000}, ("jpeg_quality",)),
    ({"samples_format": "bmp"}, ("samples_format",)),
    ({"sd_model_checkpoint": "no-such-model"}, ("sd_model_checkpoint",)),
    ({"sd_vae": "no-such-vae.safetensors"}, ("sd_vae",)),
])
def test_post_options_rejects_bad_values_and_changes_nothing(client, body, loc):
    before = client.get(f"{API}/options").json()
    assert_422(client.post(f"{API}/options", json={"jpeg_quality": 33, **body}), *loc)
    assert client.get(f"{API}/options").json() == before


def test_post_options_body_must_be_an_object(client):
    assert_422(client.post(f"{API}/options", json=[1, 2]))
    assert_422(client.post(f"{API}/options", content=b"{not json", headers={"content-type": "application/json"}))


def test_switch_model_by_title_name_and_hash(client, ctx):
    models = {m["model_name"]: m for m in client.get(f"{API}/sd-models").json()}
    for key, name in (("title", "tiny-b"), ("model_name", "tiny-a"), ("hash", "tiny-b"), ("sha256", "tiny-a")):
        r = client.post(f"{API}/options", json={"sd_model_checkpoint": models[name][key]})
        assert r.status_code == 200, r.text
        assert ctx.models.current.info.title == models[name]["title"]
        assert client.get(f"{API}/options").json()["sd_model_checkpoint"] == models[name]["title"]


def test_unload_and_reload_checkpoint(client, ctx):
    client.post(f"{API}/options", json={"sd_model_checkpoint": "tiny-a"})
    assert client.post(f"{API}/unload-checkpoint").status_code == 200
    assert ctx.models.current is None
    assert client.post(f"{API}/reload-checkpoint").status_code == 200
    assert ctx.models.current.info.model_name == "tiny-a"
    first = ctx.models.sd_model
    assert client.post(f"{API}/reload-checkpoint").status_code == 200
    assert ctx.models.sd_model is not first  # read from disk again


# --- progress, interrupt, skip -------------------------------------------------------------------

def test_progress_when_idle(client):
    body = client.get(f"{API}/progress").json()
    assert body["progress"] == 0 and body["current_image"] is None
    assert set(body["state"]) >= {"skipped", "interrupted", "job", "job_count", "job_timestamp", "job_no",
                                  "sampling_step", "sampling_steps"}


@pytest.fixture
def running_job(ctx):
    """A job holding the queue (as a generation would) until released."""
    release, started = threading.Event(), threading.Event()

    def work(job):
        job.job_count = 2
        job.begin_image(1, 10)
        job.set_step(5, preview=gradient(16, 8))
        started.set()
        release.wait(10)

    job = ctx.jobs.new_job("txt2img")
    thread = threading.Thread(target=ctx.jobs.run, args=(job, work))
    thread.start()
    assert started.wait(10)
    yield job
    release.set()
    thread.join(10)


def test_progress_interrupt_and_skip_act_on_the_running_job(client, running_job):
    body = client.get(f"{API}/progress").json()
    assert body["state"]["job"] == "txt2img" and body["state"]["sampling_step"] == 5
    assert body["progress"] == pytest.approx(0.75)
    assert b64_image(body["current_image"]).size == (16, 8)
    assert client.get(f"{API}/progress", params={"skip_current_image": "true"}).json()["current_image"] is None
    assert client.post(f"{API}/skip").json() == {}
    assert running_job.skipped and not running_job.interrupted
    assert client.post(f"{API}/interrupt").json() == {}
    assert running_job.interrupted
    assert client.get(f"{API}/progress").json()["state"]["interrupted"] is True


def test_interrupt_with_nothing_running_is_harmless(client):
    assert client.post(f"{API}/interrupt").status_code == 200
    assert client.post(f"{API}/skip").status_code == 200


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("body, loc", [
    ({"steps": -1}, ("steps",)),
    ({"steps": 10**9}, ("steps",)),
    ({"steps": "many"}, ("steps",)),
    ({"width": -64}, ("width",)),
    ({"width": 10**6}, ("width",)),
    ({"height": 0}, ("height",)),
    ({"batch_size": 0}, ("batch_size",)),
    ({"batch_size": 100000}, ("batch_size",)),
    ({"n_iter": -2}, ("n_iter",)),
    ({"cfg_scale": "nan"}, ("cfg_scale",)),
    ({"seed": -7}, ("seed",)),
    ({"seed": 2**70}, ("seed",)),
    ({"denoising_strength": 3}, ("denoising_strength",)),
    ({"sampler_name": "Euler b"}, ("sampler_name",)),
    ({"scheduler": "sometimes"}, ("scheduler",)),
    ({"override_settings": {"no_such_setting": 1}}, ("override_settings", "no_such_setting")),
    ({"override_settings": {"CLIP_stop_at_last_layers": 99}}, ("override_settings", "CLIP_stop_at_last_layers")),
    ({"override_settings": {"sd_model_checkpoint": "no-such-model"}}, ("override_settings", "sd_model_checkpoint")),
    ({"enable_hr": True, "hr_upscaler": "Magic"}, ("hr_upscaler",)),
    ({"enable_hr": True, "hr_scale": 7.9, "width": 4096}, ("hr_scale",)),
    ({"enable_hr": True, "hr_sampler_name": "nope"}, ("hr_sampler_name",)),
    ({"restore_faces": True}, ("restore_faces",)),
    ({"firstpass_image": "abc"}, ("firstpass_image",)),
    ({"refiner_checkpoint": "sdxl-refiner"}, ("refiner_checkpoint",)),
    ({"styles": "not a list"}, ("styles",)),
])
def test_txt2img_bad_fields_are_422_naming_the_field(client, body, loc):
    assert_422(client.post(f"{API}/txt2img", json=body), *loc)


def test_sizes_above_the_img_max_size_setting_are_refused(client, ctx):
    with ctx.opts.override({"img_max_size": 256, "max_batch_count": 3}):
        assert_422(client.post(f"{API}/txt2img", json={"width": 264, "height": 64}), "width")
        assert_422(client.post(f"{API}/txt2img", json={"width": 64, "height": 512}), "height")
        assert_422(client.post(f"{API}/txt2img", json={"width": 64, "height": 64, "n_iter": 4}), "n_iter")
        big = png_b64(gradient(300, 10))
        small = {"width": 64, "height": 64}
        assert_422(client.post(f"{API}/img2img", json={"init_images": [big], **small}), "init_images", 0)
        assert_422(client.post(f"{API}/img2img", json={"init_images": [png_b64(gradient(8, 8))], "mask": big,
                                                       **small}), "mask")
        assert_422(client.post(f"{API}/png-info", json={"image": big}), "image")


def test_unknown_scripts_are_422(client):
    r = client.post(f"{API}/txt2img", json={"script_name": "x/y/z plot"})
    assert r.status_code == 422 and "not found" in r.json()["detail"]
    r = client.post(f"{API}/img2img", json={"init_images": [png_b64(gradient(8, 8))],
                                            "alwayson_scripts": {"controlnet": {"args": []}}})
    assert r.status_code == 422 and "controlnet" in r.json()["detail"]


GOOD = png_b64(gradient(8, 8))
NOT_IMAGE = base64.b64encode(b"just some text, not an image").decode()
NOISE = Image.frombytes("RGB", (64, 64), random.Random(0).randbytes(64 * 64 * 3))
TRUNCATED = base64.b64encode(base64.b64decode(png_b64(NOISE))[:2000]).decode()


@pytest.mark.parametrize("image", ["", "%%%not base64%%%", NOT_IMAGE, TRUNCATED, "data:image/png;base64",
                                   "data:image/png;base64,@@@@"])
def test_bad_images_are_422(client, image):
    assert_422(client.post(f"{API}/img2img", json={"init_images": [image]}), "init_images", 0)
    assert_422(client.post(f"{API}/img2img", json={"init_images": [GOOD], "mask": image or " "}), "mask")
    if image:
        assert_422(client.post(f"{API}/img2img", json={"init_images": [GOOD], "latent_mask": image}), "latent_mask")
    if image:
        assert_422(client.post(f"{API}/png-info", json={"image": image}), "image")
        assert_422(client.post(f"{API}/extra-single-image", json={"image": image, "upscaler_1": "Lanczos"}),
                   "image")


def test_img2img_without_init_images_is_422(client):
    assert_422(client.post(f"{API}/img2img", json={"prompt": "x"}), "init_images")
    assert_422(client.post(f"{API}/img2img", json={"init_images": []}), "init_images")
    assert_422(client.post(f"{API}/img2img", json={"init_images": "abc"}), "init_images")


@pytest.mark.parametrize("url", ["http://127.0.0.1:7860/file=x.png", "http://localhost/a.png",
                                 "http://169.254.169.254/latest/meta-data/", "https://10.0.0.1/a.png",
                                 "http://[::1]/a.png", "HTTP://192.168.1.1/a.png", "file:///etc/passwd",
                                 "ftp://example.com/a.png"])
def test_image_urls_are_refused(client, url):
    for path, body in (("img2img", {"init_images": [url]}), ("png-info", {"image": url}),
                       ("extra-single-image", {"image": url, "upscaler_1": "Lanczos"})):
        r = client.post(f"{API}/{path}", json=body)
        assert r.status_code == 400, r.text
        assert "URL" in r.json()["detail"]


def test_malformed_json_bodies_are_422(client):
    for path in ("txt2img", "img2img", "png-info", "extra-single-image"):
        r = client.post(f"{API}/{path}", content=b'{"prompt": ', headers={"content-type": "application/json"})
        assert_422(r)
        r = client.post(f"{API}/{path}", content=b"\xff\xfe\x00", headers={"content-type": "application/json"})
        assert r.status_code in (400, 422) and "detail" in r.json()


def test_validation_errors_do_not_echo_large_inputs(client):
    huge = "A" * 100_000 + "!"
    r = client.post(f"{API}/png-info", json={"image": huge})
    assert r.status_code == 422 and len(r.content) < 2000


def test_an_unexpected_error_is_a_json_500_and_the_server_goes_on(client, ctx):
    class BrokenStyles:  # e.g. a styles file on a disk that just failed
        def as_api(self):
            raise RuntimeError("disk on fire")

    ctx.services.styles = BrokenStyles()
    try:
        r = client.get(f"{API}/prompt-styles")
    finally:
        ctx.services.styles = None
    assert r.status_code == 500
    assert r.json() == {"error": "RuntimeError", "detail": "internal error: disk on fire"}
    assert "Traceback" not in r.text
    assert client.get(f"{API}/progress").status_code == 200


# --- png-info and extras -------------------------------------------------------------------------

def test_png_info_of_an_image_without_text(client):
    body = client.post(f"{API}/png-info", json={"image": GOOD}).json()
    assert body["info"] == "" and body["parameters"] == {}
    assert client.post(f"{API}/png-info", json={"image": "  "}).json()["info"] == ""


def test_extra_single_image_upscales_by_and_to(client):
    source = png_b64(gradient(40, 20))
    r = client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "Lanczos",
                                                         "upscaling_resize": 2})
    assert r.status_code == 200, r.text
    out = b64_image(r.json()["image"])
    assert out.size == (80, 40)
    assert "Postprocess upscaler: Lanczos" in out.info["parameters"]
    r = client.post(f"{API}/extra-single-image", json={
        "image": "data:image/png;base64," + source, "resize_mode": 1, "upscaler_1": "Nearest",
        "upscaling_resize_w": 30, "upscaling_resize_h": 30, "upscaling_crop": True})
    assert b64_image(r.json()["image"]).size == (30, 30)
    r = client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "None"})
    assert b64_image(r.json()["image"]).size == (40, 20)


def test_extra_single_image_bad_requests(client, ctx):
    source = png_b64(gradient(40, 20))
    assert_422(client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "Latent"}),
               "upscaler_1")
    assert_422(client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_2": "ESRGAN 9x"}),
               "upscaler_2")
    assert_422(client.post(f"{API}/extra-single-image", json={"image": source, "gfpgan_visibility": 0.5}),
               "gfpgan_visibility")
    with ctx.opts.override({"img_max_size": 64}):  # Extras may make up to 4x img_max_size a side: 256
        assert_422(client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "Lanczos",
                                                                  "upscaling_resize": 8}), "upscaling_resize")


# --- auth ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_client(data_dir, tmp_path_factory):
    ctx = make_context(tmp_path_factory.mktemp("auth-data"), "--api-auth", "alice:s3cret:x, bob:pw")
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False), app


def test_api_auth_protects_every_route(auth_client):
    client, app = auth_client
    checked = 0
    for path, methods in app.openapi()["paths"].items():
        assert path.startswith(API)
        for method in methods:
            r = client.request(method.upper(), path, json={})
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Basic"
            checked += 1
    assert checked == 40  # every A1111 1.10 route, with the Lora extension's and Forge's /sd-modules, and /depth2img


@pytest.mark.parametrize("auth, status", [
    (("alice", "s3cret:x"), 200), (("bob", "pw"), 200), (("alice", "pw"), 401), (("bob", "s3cret:x"), 401),
    (("alice", "s3cret"), 401), (("", ""), 401), (("mallory", "pw"), 401)])
def test_api_auth_credentials(auth_client, auth, status):
    client, _ = auth_client
    assert client.get(f"{API}/progress", auth=auth).status_code == status


def test_api_auth_malformed_header_is_401(auth_client):
    client, _ = auth_client
    for header in ("Basic !!!notbase64", "Bearer abc", "Basic " + base64.b64encode(b"no-colon").decode()):
        r = client.get(f"{API}/progress", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_time_bounded_concurrent_progress_reads(client):
    """Many readers at once: every answer is well formed (the async handlers share no state)."""
    results = []

    def read():
        results.append(client.get(f"{API}/progress").status_code)

    threads = [threading.Thread(target=read) for _ in range(16)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 16 and time.time() - t0 < 10


def test_png_images_are_accepted_with_a_data_url_prefix(client):
    r = client.post(f"{API}/png-info", json={"image": "data:image/png;base64," + GOOD})
    assert r.status_code == 200 and r.json()["info"] == ""
    image = Image.new("RGB", (4, 4))
    assert client.post(f"{API}/png-info", json={"image": png_b64(image)}).status_code == 200
