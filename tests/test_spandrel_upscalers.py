"""Model upscalers from A1111's folders (models/ESRGAN, RealESRGAN, SwinIR, DAT, HAT ...) through spandrel:
detected from the shapes, listed in the upscaler table and /upscalers, run tiled without seams;
a pickle that would run code is refused."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules import spandrel_models
from tests.api_support import b64_image, make_context, png_b64
from tests.spandrel_support import save_network, tiny_networks

FOLDERS = {"4x-tiny-esrgan": "ESRGAN", "2x-tiny-compact": "RealESRGAN", "tiny-swinir-x2": "SwinIR",
           "tiny-dat-x2": "DAT", "tiny-hat-x2": "HAT"}


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def networks():
    return tiny_networks()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, networks):
    root = tmp_path_factory.mktemp("upscaler-data")
    for i, (name, (net, _, _)) in enumerate(networks.items()):
        suffix = ".safetensors" if i % 2 else ".pth"
        save_network(net, root / "models" / FOLDERS[name] / f"{name}{suffix}",
                     wrap="params_ema" if FOLDERS[name] == "RealESRGAN" else None)
    return root


@pytest.fixture(scope="module")
def ctx(data_dir):
    return make_context(data_dir)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_each_architecture_is_detected_with_its_scale_from_either_format(tmp_path, networks, suffix):
    for name, (net, scale, arch) in networks.items():
        info = spandrel_models.describe(save_network(net, tmp_path / f"{name}{suffix}"))
        assert (info.architecture, info.scale, info.purpose) == (arch, scale, "SR"), name


def test_the_folders_are_listed_in_the_table_and_by_the_api(ctx, networks):
    table = ctx.services.upscalers
    for name in networks:
        assert name in table.names()
        entry = table.get(name)
        assert entry.scale == networks[name][1] and entry.model_path.endswith(("pth", "safetensors"))
    from webui.api import routes
    app = FastAPI()
    routes.install(app, ctx)
    client = TestClient(app)
    listed = {u["name"]: u for u in client.get("/sdapi/v1/upscalers").json()}
    assert listed["4x-tiny-esrgan"]["scale"] == 4 and listed["tiny-dat-x2"]["model_name"] == "DAT"
    realesrgan = client.get("/sdapi/v1/realesrgan-models").json()
    assert [m["name"] for m in realesrgan] == ["2x-tiny-compact"] and realesrgan[0]["scale"] == 2
    from modules.processing import hires
    assert "tiny-hat-x2" in hires.upscaler_names(table)  # hires fix offers them too
    # Extras through the API: the model's native pass, then the exact size asked for
    r = client.post("/sdapi/v1/extra-single-image", json={"image": png_b64(noise_image(20, 12)),
                                                          "upscaler_1": "4x-tiny-esrgan", "upscaling_resize": 4})
    assert r.status_code == 200, r.text
    assert b64_image(r.json()["image"]).size == (80, 48)
    assert "Postprocess upscaler: 4x-tiny-esrgan" in r.json()["html_info"]


@pytest.mark.parametrize("name", list(FOLDERS))
def test_every_model_upscales_to_the_size_asked(ctx, name):
    image = noise_image(21, 13, seed=1)
    out = ctx.services.upscalers.upscale(image, name, 50, 30)
    assert out.size == (50, 30)
    native = ctx.services.upscalers.get(name).run(image)
    scale = ctx.services.upscalers.get(name).scale
    assert native.size == (21 * scale, 13 * scale)
    # the network did something of its own: not a plain resize of the input
    plain = np.asarray(image.resize(native.size, Image.BICUBIC), np.float32)
    assert np.abs(np.asarray(native, np.float32) - plain).mean() > 5


def test_tiles_blend_without_seams(tmp_path, networks):
    """A small receptive field (Compact, 4 convolutions): tiles overlapping by 8 px give nearly the
    untiled result, and much closer than the same tiles butted together without overlap."""
    model = spandrel_models.load(save_network(networks["2x-tiny-compact"][0], tmp_path / "c.safetensors"))
    image = noise_image(70, 50, seed=3)
    whole = np.asarray(spandrel_models.upscale(model, image), np.float32)
    blended = np.asarray(spandrel_models.upscale(model, image, tile=24, overlap=8), np.float32)
    butted = np.asarray(spandrel_models.upscale(model, image, tile=24, overlap=0), np.float32)
    assert blended.shape == whole.shape == (100, 140, 3)
    seam_error, blend_error = np.abs(butted - whole), np.abs(blended - whole)
    # without overlap the tile borders show as lines of wrong pixels (measured: worst column 3.1 levels off)
    assert seam_error.max() >= 10 and seam_error.mean(axis=(0, 2)).max() > 2.0
    # blended: no column or row stands out (measured 0.6 / 0.5 levels), nothing far off (measured 2)
    assert blend_error.max() <= 4 and blend_error.mean() < 0.25
    assert blend_error.mean(axis=(0, 2)).max() < 1.0 and blend_error.mean(axis=(1, 2)).max() < 1.0


def test_tile_settings_come_from_the_folders_a1111_option(ctx):
    service = ctx.services.model_upscalers
    by_name = service.found
    with ctx.opts.override({"SWIN_tile": 64, "SWIN_tile_overlap": 4, "DAT_tile": 0}):
        assert service.tile_settings(by_name["tiny-swinir-x2"]) == (64, 4)
        assert service.tile_settings(by_name["tiny-dat-x2"]) == (0, 8)
        assert service.tile_settings(by_name["4x-tiny-esrgan"]) == (192, 8)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def test_a_pickle_that_would_run_code_is_refused_and_not_listed(tmp_path, networks, capsys):
    folder = tmp_path / "models" / "ESRGAN"
    folder.mkdir(parents=True)
    state = {k: v for k, v in networks["4x-tiny-esrgan"][0].state_dict().items()}
    state["evil"] = _RunsCode()
    torch.save(state, folder / "4x-evil.pth")
    (folder / "notes.pth").write_bytes(pickle.dumps("not a model"))
    with pytest.raises(spandrel_models.sd_io.CheckpointRefused, match="would run code"):
        spandrel_models.describe(folder / "4x-evil.pth")
    ctx = make_context(tmp_path)
    assert "4x-evil" not in ctx.services.upscalers.names()
    assert "would run code" in ctx.services.model_upscalers.problems[str(folder / "4x-evil.pth")]
    assert "this pickle runs code" not in capsys.readouterr().out


def test_an_unknown_architecture_says_so(tmp_path):
    path = tmp_path / "odd.safetensors"
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(3, 3)}, path)
    with pytest.raises(spandrel_models.UnsupportedModel, match="not an architecture"):
        spandrel_models.describe(path)


def test_scale_from_name():
    assert spandrel_models.scale_from_name("4x-UltraSharp") == 4
    assert spandrel_models.scale_from_name("RealESRGAN_x2plus") == 2
    assert spandrel_models.scale_from_name("model") == 4
