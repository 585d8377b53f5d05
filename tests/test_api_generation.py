"""txt2img / img2img through the API on tiny real checkpoints (catalog -> load -> generate):
response shapes, sampler-name matching, override_settings, hires, inpainting, infotext round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from tests.api_support import b64_image, gradient, make_context, make_data_dir, png_b64
from webui.api import routes

API = "/sdapi/v1"
SMALL = {"width": 64, "height": 64, "steps": 3, "seed": 1234, "cfg_scale": 5}
INFO_KEYS = {"prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
             "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps",
             "batch_size", "restore_faces", "sd_model_name", "sd_model_hash", "sd_vae_name", "sd_vae_hash",
             "seed_resize_from_w", "seed_resize_from_h", "denoising_strength", "extra_generation_params",
             "index_of_first_image", "infotexts", "styles", "job_timestamp", "clip_skip",
             "is_using_inpainting_conditioning", "version"}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from modules import startup

    data_dir = make_data_dir(tmp_path_factory.mktemp("gen-data"))
    (data_dir / "styles.csv").write_text('name,prompt,negative_prompt\nfilm,"{prompt}, film grain",lowres\n')
    ctx = make_context(data_dir)
    startup.attach_services(ctx)  # styles, embeddings, LoRA, the conditioner: as the server has them
    ctx.opts.set("sd_model_checkpoint", "tiny-a.safetensors")
    return ctx


@pytest.fixture(scope="module")
def client(ctx):
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False)


def txt2img(client, **fields) -> dict:
    r = client.post(f"{API}/txt2img", json={**SMALL, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def pixels(b64: str) -> np.ndarray:
    return np.asarray(b64_image(b64).convert("RGB"))


def test_txt2img_response_is_shaped_as_a1111s(client):
    body = txt2img(client, prompt="a red cube", negative_prompt="blurry")
    assert set(body) == {"images", "parameters", "info"}
    assert len(body["images"]) == 1 and not body["images"][0].startswith("data:")
    image = b64_image(body["images"][0])
    assert image.format == "PNG" and image.size == (64, 64)
    assert image.info["parameters"].startswith("a red cube\nNegative prompt: blurry\nSteps: 3, ")
    params = body["parameters"]
    assert params["prompt"] == "a red cube" and params["steps"] == 3 and params["seed"] == 1234
    assert params["n_iter"] == 1 and params["sampler_index"] == "Euler" and params["send_images"] is True
    info = json.loads(body["info"])
    assert INFO_KEYS <= set(info)
    assert info["prompt"] == "a red cube" and info["all_prompts"] == ["a red cube"]
    assert info["negative_prompt"] == "blurry" and info["seed"] == 1234 and info["all_seeds"] == [1234]
    assert info["sampler_name"] == "Euler" and info["steps"] == 3 and (info["width"], info["height"]) == (64, 64)
    assert info["sd_model_name"] == "tiny-a" and len(info["sd_model_hash"]) == 10
    assert info["infotexts"] == [image.info["parameters"]] and info["is_using_inpainting_conditioning"] is False
    assert len(info["job_timestamp"]) == 14


def test_defaults_are_a1111s(client):
    body = txt2img(client, prompt="x")
    params = body["parameters"]
    assert params["cfg_scale"] == 5 and params["batch_size"] == 1 and params["override_settings_restore_afterwards"]
    r = client.post(f"{API}/txt2img", json={"steps": 1, "width": 64, "height": 64})
    assert r.json()["parameters"]["cfg_scale"] == 7.0 and r.json()["parameters"]["negative_prompt"] == ""
    assert json.loads(r.json()["info"])["seed"] >= 0  # -1 -> a random seed, reported


def test_same_request_same_image_and_seed_changes_it(client):
    a, b = txt2img(client, prompt="p"), txt2img(client, prompt="p")
    assert np.array_equal(pixels(a["images"][0]), pixels(b["images"][0]))
    c = txt2img(client, prompt="p", seed=99)
    assert not np.array_equal(pixels(a["images"][0]), pixels(c["images"][0]))


@pytest.mark.parametrize("names", [
    [{"sampler_name": "Euler a"}, {"sampler_name": "euler A"}, {"sampler_name": "k_euler_a"},
     {"sampler_name": "Euler a", "scheduler": "automatic"}, {"sampler_name": "Euler a", "eta": 1.0}],
    [{"sampler_name": "DPM++ 2M Karras"}, {"sampler_name": "DPM++ 2M", "scheduler": "karras"},
     {"sampler_name": "dpm++ 2m", "scheduler": "Karras"}, {"sampler_name": "DPM++ 2M", "scheduler": "Automatic"}],
    [{}, {"sampler_index": "Euler"}, {"sampler_name": "euler"}],
])
def test_sampler_and_schedule_names_are_matched_as_a1111_does(client, names):
    first = None
    for fields in names:
        body = txt2img(client, prompt="names", **fields)
        info = json.loads(body["info"])
        image = pixels(body["images"][0])
        if first is None:
            first = (info["sampler_name"], image)
        assert info["sampler_name"] == first[0], fields
        assert np.array_equal(image, first[1]), fields


def test_other_schedule_changes_the_image_and_the_infotext(client):
    auto = txt2img(client, prompt="s", sampler_name="Euler")
    karras = txt2img(client, prompt="s", sampler_name="Euler Karras")
    assert "Schedule type: Karras" in json.loads(karras["info"])["infotexts"][0]
    assert not np.array_equal(pixels(auto["images"][0]), pixels(karras["images"][0]))


def test_batches_return_a_grid_first_and_consecutive_seeds(client):
    body = txt2img(client, prompt="b", batch_size=2, n_iter=2, seed=50, steps=2)
    info = json.loads(body["info"])
    assert len(body["images"]) == 5 and info["index_of_first_image"] == 1
    assert info["all_seeds"] == [50, 51, 52, 53] and len(info["all_prompts"]) == 4
    assert b64_image(body["images"][0]).size == (128, 128)
    alone = txt2img(client, prompt="b", seed=51, steps=2)
    assert np.array_equal(pixels(body["images"][2]), pixels(alone["images"][0]))


def test_send_images_false(client):
    body = txt2img(client, prompt="x", send_images=False, steps=1)
    assert body["images"] == [] and json.loads(body["info"])["all_seeds"] == [1234]


def test_override_settings_apply_to_the_job_and_are_restored(client, ctx):
    body = txt2img(client, prompt="o", override_settings={"CLIP_stop_at_last_layers": 2})
    assert json.loads(body["info"])["clip_skip"] == 2 and "Clip skip: 2" in json.loads(body["info"])["infotexts"][0]
    assert ctx.opts.CLIP_stop_at_last_layers == 1
    plain = txt2img(client, prompt="o")
    assert not np.array_equal(pixels(body["images"][0]), pixels(plain["images"][0]))
    txt2img(client, prompt="o", steps=1, override_settings={"CLIP_stop_at_last_layers": 2},
            override_settings_restore_afterwards=False)
    try:
        assert ctx.opts.CLIP_stop_at_last_layers == 2
    finally:
        ctx.opts.set("CLIP_stop_at_last_layers", 1)


def test_override_checkpoint_for_one_job(client, ctx):
    ctx.models.load("tiny-a.safetensors")
    body = txt2img(client, prompt="m", override_settings={"sd_model_checkpoint": "tiny-b"})
    assert json.loads(body["info"])["sd_model_name"] == "tiny-b"
    assert ctx.models.current.info.model_name == "tiny-a"
    other = txt2img(client, prompt="m")
    assert not np.array_equal(pixels(body["images"][0]), pixels(other["images"][0]))


def test_hires_fix_with_latent_upscaler(client):
    body = txt2img(client, prompt="h", steps=2, enable_hr=True, hr_upscaler="Latent", hr_scale=1.5,
                   hr_second_pass_steps=2, denoising_strength=0.6)
    assert b64_image(body["images"][0]).size == (96, 96)
    assert "Hires upscaler: Latent" in json.loads(body["info"])["infotexts"][0]


def test_infotext_field_fills_unset_fields(client):
    text = "a dog\nNegative prompt: cat\nSteps: 2, Sampler: Euler a, CFG scale: 3, Seed: 77, Size: 64x48, Clip skip: 2"
    r = client.post(f"{API}/txt2img", json={"infotext": text, "seed": 78})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert (info["prompt"], info["negative_prompt"], info["steps"], info["sampler_name"]) == ("a dog", "cat", 2, "Euler a")
    assert (info["width"], info["height"], info["seed"], info["clip_skip"]) == (64, 48, 78, 2)


def test_png_info_reads_back_a_generated_image(client):
    body = txt2img(client, prompt="round (trip:1.2), with comma", negative_prompt="n", seed=4321, steps=2)
    r = client.post(f"{API}/png-info", json={"image": body["images"][0]})
    assert r.status_code == 200
    got = r.json()
    assert got["info"] == json.loads(body["info"])["infotexts"][0]
    params = got["parameters"]
    assert params["Prompt"] == "round (trip:1.2), with comma" and params["Negative prompt"] == "n"
    assert (params["Steps"], params["Seed"], params["Size-1"], params["Model"]) == ("2", "4321", "64", "tiny-a")


def square_mask(size=64, box=(16, 16, 48, 48)) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


@pytest.mark.parametrize("checkpoint", ["tiny-inpaint", "tiny-a"])
def test_img2img_inpaint_keeps_pixels_outside_the_mask(client, checkpoint):
    init = gradient(64, 64)
    r = client.post(f"{API}/img2img", json={
        **SMALL, "prompt": "fill", "init_images": [png_b64(init)], "mask": png_b64(square_mask()),
        "mask_blur": 0, "inpainting_fill": 1, "inpaint_full_res": False, "denoising_strength": 0.9,
        "override_settings": {"sd_model_checkpoint": checkpoint}})
    assert r.status_code == 200, r.text
    body = r.json()
    out = pixels(body["images"][0]).astype(int)
    original = np.asarray(init).astype(int)
    outside = np.ones((64, 64), bool)
    outside[12:52, 12:52] = False
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[20:44, 20:44] - original[20:44, 20:44]).mean() > 1
    info = json.loads(body["info"])
    assert info["is_using_inpainting_conditioning"] is (checkpoint == "tiny-inpaint")
    assert body["parameters"]["init_images"] is None and body["parameters"]["mask"] is None


def test_img2img_echoes_images_when_asked_and_accepts_data_urls(client):
    init = "data:image/png;base64," + png_b64(gradient(64, 64))
    r = client.post(f"{API}/img2img", json={**SMALL, "init_images": [init], "include_init_images": True,
                                             "denoising_strength": 0.5, "steps": 2})
    assert r.status_code == 200, r.text
    assert r.json()["parameters"]["init_images"] == [init]
    assert json.loads(r.json()["info"])["denoising_strength"] == 0.5


def test_generation_loads_a_model_after_unload(client, ctx):
    assert client.post(f"{API}/unload-checkpoint").status_code == 200
    assert ctx.models.current is None
    body = txt2img(client, prompt="after unload", steps=1)
    assert json.loads(body["info"])["sd_model_name"] == "tiny-a"


def test_no_checkpoint_at_all_is_a_503_with_a_message(tmp_path):
    ctx = make_context(tmp_path)
    app = FastAPI()
    routes.install(app, ctx)
    client = TestClient(app, raise_server_exceptions=False)
    r = client.post(f"{API}/txt2img", json={**SMALL})
    assert r.status_code == 503 and "checkpoint" in r.json()["detail"]
    assert client.post(f"{API}/reload-checkpoint").status_code == 503


def test_override_vae_choice_for_one_job(client, ctx):
    before = ctx.models.vae_choice
    body = txt2img(client, prompt="v", steps=1, override_settings={"sd_vae": "None"})
    assert json.loads(body["info"])["sd_vae_name"] is None
    assert ctx.models.vae_choice == before
    r = client.post(f"{API}/txt2img", json={**SMALL, "override_settings": {"sd_vae": "missing.safetensors"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "override_settings", "sd_vae"]


def test_styles_are_applied_and_listed(client):
    assert client.get(f"{API}/prompt-styles").json() == [
        {"name": "film", "prompt": "{prompt}, film grain", "negative_prompt": "lowres"}]
    body = txt2img(client, prompt="a fox", styles=["film"], steps=1)
    info = json.loads(body["info"])
    assert info["prompt"] == "a fox, film grain" and info["negative_prompt"] == "lowres"
    assert info["styles"] == ["film"] and body["parameters"]["styles"] == ["film"]
