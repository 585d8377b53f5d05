"""depth2img: MiDaS preprocessing sizes, depth normalisation, user depth maps, end-to-end tiny runs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.infotext import parse_generation_parameters
from modules.processing import depth2img as d2i
from modules.processing.hybrid_sampling import SamplingSettings
from tests.test_midas import tiny_midas
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def depth_model():
    model = make_tiny_model("tiny-v2-depth")
    model.depth_model = tiny_midas().requires_grad_(False)  # what a checkpoint with MiDaS weights gives
    return model


def gradient_image(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                          np.full((h, w, 1), 128, np.float32)], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


def horizontal_depth(w: int, h: int, near_right: bool = True) -> Image.Image:
    row = np.linspace(0, 255, w) if near_right else np.linspace(255, 0, w)
    return Image.fromarray(np.tile(row, (h, 1)).astype(np.uint8), mode="L")


@pytest.mark.parametrize("size, expected", [((512, 512), (384, 384)), ((768, 512), (576, 384)),
                                            ((512, 768), (384, 576)), ((1024, 1024), (384, 384))])
def test_midas_input_size_keeps_aspect_in_multiples_of_32(size, expected):
    assert d2i.midas_input_size(*size) == expected


def test_prepare_midas_input_resizes_and_normalises():
    image = torch.full((1, 3, 512, 768), 0.2)  # [-1, 1] image; MiDaS wants (x01 - 0.5) / 0.5
    x = d2i.prepare_midas_input(image)
    assert x.shape == (1, 3, 384, 576)
    torch.testing.assert_close(x, torch.full_like(x, 0.2))


def test_normalize_depth_to_minus_one_one_per_image():
    depth = torch.rand(2, 1, 8, 12) * torch.tensor([3.0, 100.0]).view(2, 1, 1, 1) + 5
    out = d2i.normalize_depth(depth)
    for i in range(2):
        assert out[i].min().item() == pytest.approx(-1.0) and out[i].max().item() == pytest.approx(1.0)
    # order is kept: the nearest point stays the nearest
    assert out[1].flatten().argmax() == depth[1].flatten().argmax()


def test_estimated_depth_conditioning_is_at_latent_size(depth_model):
    source = torch.rand(2, 3, 64, 96) * 2 - 1
    cond = d2i.depth_image_conditioning(depth_model, source)
    assert cond.source == "MiDaS"
    assert cond.cond.shape == (2, 1, 8, 12)
    assert cond.cond.amin().item() == pytest.approx(-1.0) and cond.cond.amax().item() == pytest.approx(1.0)
    assert cond.image.size == (96, 64) and cond.image.mode == "L"


def test_user_depth_map_bypasses_the_estimator(depth_model):
    calls = []
    handle = depth_model.depth_model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        source = torch.zeros(1, 3, 64, 96)
        cond = d2i.depth_image_conditioning(depth_model, source, horizontal_depth(50, 30))
        assert calls == [] and cond.source == "user"
        d2i.depth_image_conditioning(depth_model, source)
        assert calls == [1]  # the hook does see the estimator when it runs
    finally:
        handle.remove()
    row = cond.cond[0, 0, 4]  # user map resized to the latent size: nearer to the right, [-1, 1]
    assert (row[1:] >= row[:-1] - 1e-5).all()
    assert row[0].item() == pytest.approx(-1.0, abs=0.05) and row[-1].item() == pytest.approx(1.0, abs=0.05)


def test_sixteen_bit_depth_map_is_read_at_full_precision():
    arr = np.tile(np.linspace(0, 65535, 40), (10, 1)).astype(np.uint16)
    t = d2i.depth_map_tensor(Image.fromarray(arr))
    assert t.shape == (1, 1, 10, 40) and t.max().item() == 65535


def test_model_without_midas_weights_needs_a_depth_map():
    model = make_tiny_model("tiny-v2-depth")  # no depth_stage_config: no depth_model
    with pytest.raises(ValueError, match="upload a depth map"):
        d2i.depth_image_conditioning(model, torch.zeros(1, 3, 64, 64))
    cond = d2i.depth_image_conditioning(model, torch.zeros(1, 3, 64, 64), horizontal_depth(64, 64))
    assert cond.cond.shape == (1, 1, 8, 8)


def _request(**kw) -> d2i.Depth2ImgRequest:
    settings = SamplingSettings(prompt="a room", negative_prompt="blurry", steps=4, cfg_scale=5.0,
                                sampler_name="Euler", seed=1234)
    return d2i.Depth2ImgRequest(image=gradient_image(96, 64), settings=settings, **kw)


def test_depth2img_end_to_end_with_midas(depth_model):
    result = d2i.depth2img(depth_model, _request(denoising_strength=0.6, batch_size=2))
    assert [im.size for im in result.images] == [(96, 64), (96, 64)]
    assert result.depth_image.size == (96, 64)
    params = parse_generation_parameters(result.infotexts[1])
    assert params["Depth map"] == "MiDaS" and params["Seed"] == "1235"
    assert params["Denoising strength"] == "0.6" and params["Prompt"] == "a room"


def test_depth_map_changes_the_result(depth_model):
    a = d2i.depth2img(depth_model, _request(depth_map=horizontal_depth(96, 64, near_right=True)))
    b = d2i.depth2img(depth_model, _request(depth_map=horizontal_depth(96, 64, near_right=False)))
    again = d2i.depth2img(depth_model, _request(depth_map=horizontal_depth(96, 64, near_right=True)))
    arr = [np.asarray(r.images[0], dtype=np.int16) for r in (a, b, again)]
    assert np.array_equal(arr[0], arr[2])  # same seed, same depth: same picture
    assert np.abs(arr[0] - arr[1]).max() > 0  # the depth channel reaches the UNet
    assert "Depth map: user" in a.infotexts[0]
    assert np.asarray(a.depth_image)[:, -1].mean() > np.asarray(a.depth_image)[:, 0].mean()


def test_depth2img_rejects_ordinary_models():
    with pytest.raises(ValueError, match="depth model"):
        d2i.depth2img(make_tiny_model("tiny-v2"), _request())
