"""Every /sdapi/v1 route of A1111 1.10.1 (modules/api/api.py, plus the built-in Lora extension's
/loras and /refresh-loras, and Forge's /sd-modules) answers with A1111's shape; a route whose feature
is absent answers an empty list or a 400 naming what to install, never 404 or 500."""
from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import interrogate
from tests.api_support import b64_image, gradient, make_context, make_data_dir, png_b64
from webui.api import routes

API = "/sdapi/v1"
TINY = {"prompt": "a cat", "steps": 1, "width": 64, "height": 64, "sampler_name": "Euler"}


def _keys(*names):
    return lambda body: isinstance(body, dict) and set(names) <= set(body)


def _list_of(*names):
    return lambda body: isinstance(body, list) and all(set(names) <= set(item) for item in body)


GET_ROUTES = {
    "progress": _keys("progress", "eta_relative", "state", "current_image", "textinfo"),
    "options": _keys("sd_model_checkpoint", "token_merging_ratio", "s_min_uncond", "uni_pc_variant"),
    "cmd-flags": _keys("api", "api_server_stop"),
    "samplers": _list_of("name", "aliases", "options"),
    "schedulers": _list_of("name", "label", "aliases", "default_rho", "need_inner_model"),
    "upscalers": _list_of("name", "model_name", "model_path", "model_url", "scale"),
    "latent-upscale-modes": _list_of("name"),
    "sd-models": _list_of("title", "model_name", "hash", "sha256", "filename", "config"),
    "sd-vae": _list_of("model_name", "filename"),
    "sd-modules": _list_of("model_name", "filename"),
    "hypernetworks": lambda body: body == [],
    "face-restorers": _list_of("name", "cmd_dir"),
    "realesrgan-models": _list_of("name", "path", "scale"),
    "prompt-styles": _list_of("name", "prompt", "negative_prompt"),
    "embeddings": _keys("loaded", "skipped"),
    "memory": _keys("ram", "cuda"),
    "scripts": _keys("txt2img", "img2img"),
    "script-info": _list_of("name", "is_alwayson", "is_img2img", "args"),
    "extensions": _list_of("name", "remote", "branch", "commit_hash", "version", "commit_date", "enabled"),
    "loras": lambda body: isinstance(body, list),
}
IMAGE = png_b64(gradient(64, 64))
POST_ROUTES = {
    "txt2img": (TINY, 200, _keys("images", "parameters", "info")),
    "img2img": ({**TINY, "init_images": [IMAGE], "denoising_strength": 0.5}, 200, _keys("images", "parameters", "info")),
    "extra-single-image": ({"image": IMAGE, "upscaling_resize": 1.5, "upscaler_1": "Lanczos"}, 200,
                           _keys("html_info", "image")),
    "extra-batch-images": ({"imageList": [{"data": IMAGE, "name": "a.png"}] * 2, "upscaling_resize": 1.5,
                            "upscaler_1": "Nearest"}, 200, _keys("html_info", "images")),
    "png-info": ({"image": IMAGE}, 200, _keys("info", "items", "parameters")),
    "interrogate": ({"image": IMAGE}, 400, _keys("detail")),  # no CLIP files in this data dir
    "interrupt": ({}, 200, None),
    "skip": ({}, 200, None),
    "options": ({"token_merging_ratio": 0.0}, 200, None),
    "refresh-embeddings": ({}, 200, None),
    "refresh-checkpoints": ({}, 200, None),
    "refresh-vae": ({}, 200, None),
    "refresh-loras": ({}, 200, None),
    "create/embedding": ({"name": "made-by-api", "num_vectors_per_token": 2}, 200, _keys("info")),
    "create/hypernetwork": ({"name": "x"}, 400, _keys("detail")),
    "train/embedding": ({"embedding_name": "x"}, 422, _keys("detail")),  # no data_root: named
    "train/hypernetwork": ({"hypernetwork_name": "x"}, 400, _keys("detail")),
    "unload-checkpoint": ({}, 200, None),
    "reload-checkpoint": ({}, 200, None),
}
SERVER_ROUTES = ("server-kill", "server-restart", "server-stop")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("a1111-routes"))


def _client(ctx):
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False), app


@pytest.fixture(scope="module")
def ctx(data_dir):
    return make_context(data_dir)


@pytest.fixture(scope="module")
def client(ctx):
    return _client(ctx)[0]


@pytest.mark.parametrize("name", list(GET_ROUTES))
def test_every_a1111_get_route_answers_in_its_shape(client, name):
    r = client.get(f"{API}/{name}")
    assert r.status_code == 200, r.text
    assert GET_ROUTES[name](r.json()), r.json()


@pytest.mark.parametrize("name", list(POST_ROUTES))
def test_every_a1111_post_route_answers_in_its_shape(client, name):
    body, status, shape = POST_ROUTES[name]
    r = client.post(f"{API}/{name}", json=body)
    assert r.status_code == status, r.text
    if shape is not None:
        assert shape(r.json()), r.json()


def test_the_route_table_is_complete(client):
    paths = {p.removeprefix(API + "/") for p in client.app.openapi()["paths"]}
    assert set(GET_ROUTES) | set(POST_ROUTES) <= paths


def test_batch_extras_upscale_each_image(client):
    r = client.post(f"{API}/extra-batch-images", json={"imageList": [{"data": IMAGE}, {"data": png_b64(gradient(32, 48))}],
                                                     "upscaling_resize": 2, "upscaler_1": "Lanczos"})
    sizes = [b64_image(text).size for text in r.json()["images"]]
    assert sizes == [(128, 128), (64, 96)]
    bad = client.post(f"{API}/extra-batch-images", json={"imageList": [{"data": "not an image"}]})
    assert bad.status_code == 422 and "imageList" in bad.text


def test_missing_features_name_what_to_install(client):
    text = client.post(f"{API}/interrogate", json={"image": IMAGE}).json()["detail"]
    assert "open_clip_config.json" in text and "models/clip" in text.replace("\\", "/")
    assert "interrogate" in text
    text = client.post(f"{API}/interrogate", json={"image": IMAGE, "model": "deepdanbooru"}).json()["detail"]
    assert "DeepDanbooru" in text
    assert "LoRA" in client.post(f"{API}/create/hypernetwork", json={}).json()["detail"]


def test_created_embedding_is_listed(client, ctx):
    client.post(f"{API}/reload-checkpoint")
    r = client.post(f"{API}/create/embedding", json={"name": "tiny-concept", "num_vectors_per_token": 3,
                                                      "init_text": "a red cat"})
    assert r.status_code == 200 and "tiny-concept" in r.json()["info"]
    client.post(f"{API}/refresh-embeddings")
    assert "tiny-concept" in client.get(f"{API}/embeddings").json()["loaded"]
    again = client.post(f"{API}/create/embedding", json={"name": "tiny-concept"})
    assert again.status_code == 422


def test_server_routes_only_with_the_flag(client, data_dir):
    for name in SERVER_ROUTES:
        assert client.post(f"{API}/{name}").status_code == 404  # as A1111 without --api-server-stop
    flagged, app = _client(make_context(data_dir, "--api-server-stop"))
    stopped = []
    app.state.stop_server = lambda: stopped.append(True)
    assert flagged.post(f"{API}/server-restart").status_code == 501  # A1111: not restartable
    r = flagged.post(f"{API}/server-stop")
    assert r.status_code == 200 and r.text == "Stopping." and stopped == [True]
    assert flagged.get(f"{API}/cmd-flags").json()["api_server_stop"] is True


def _tiny_clip_folder(root):
    import open_clip

    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    folder = root / "clip" / "tiny"
    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(folder / "open_clip_model.safetensors"))
    lists = root / "interrogate"
    lists.mkdir()
    (lists / "mediums.txt").write_text("a photograph\na painting\na sketch\n")
    (lists / "flavors.top2.txt").write_text("blue\nred\ngreen\nbright\n")
    return model


def test_clip_interrogation_ranks_each_category_with_the_files_in_place(tmp_path):
    model = _tiny_clip_folder(tmp_path)
    caption = interrogate.interrogate(tmp_path, gradient(40, 40))
    parts = caption.split(", ")
    # categories in file-name order: flavors (top 2), then mediums (top 1)
    assert len(parts) == 3 and parts[2] in ("a photograph", "a painting", "a sketch")
    assert set(parts[:2]) <= {"blue", "red", "green", "bright"} and parts[0] != parts[1]
    # the same ranking computed directly with open_clip on the same weights
    import open_clip

    pre = open_clip.image_transform(32, is_train=False)
    with torch.no_grad():
        image = model.encode_image(pre(gradient(40, 40)).unsqueeze(0))
        text = model.encode_text(open_clip.tokenize(["a photograph", "a painting", "a sketch"]))
    scores = (image / image.norm(dim=-1, keepdim=True)) @ (text / text.norm(dim=-1, keepdim=True)).T
    assert parts[2] == ["a photograph", "a painting", "a sketch"][int(scores.argmax())]
