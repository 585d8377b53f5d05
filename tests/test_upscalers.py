"""The upscaler table (A1111 names): Lanczos / Nearest / None built in, model upscalers such as SD x4."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import upscalers
from modules.processing.hybrid_sampling import SamplingSettings
from modules.processing.upscaler_x4 import X4Settings, upscale_x4
from tests.tiny import make_tiny_model


def checker(w: int, h: int) -> Image.Image:
    arr = ((np.indices((h, w)).sum(axis=0) % 2) * 255).astype(np.uint8)
    return Image.fromarray(np.stack([arr] * 3, axis=2))


def test_names_are_a1111s_and_models_register_after_the_builtins():
    table = upscalers.UpscalerTable()
    assert table.names() == ["None", "Lanczos", "Nearest"]
    with pytest.raises(ValueError, match="unknown upscaler 'ESRGAN'"):
        table.get("ESRGAN")
    table.register(upscalers.Upscaler("Double", scale=2, run=lambda im, **kw: im.resize((im.width * 2, im.height * 2))))
    assert table.names() == ["None", "Lanczos", "Nearest", "Double"] and "Double" in table
    with pytest.raises(ValueError, match="built-in"):
        table.register(upscalers.Upscaler("Lanczos", run=lambda im, **kw: im))


def test_nearest_replicates_pixels_and_lanczos_smooths():
    table, image = upscalers.UpscalerTable(), checker(6, 4)
    near = np.asarray(table.upscale(image, "Nearest", 24, 16))
    assert near.shape == (16, 24, 3)
    assert np.array_equal(near[::4, ::4], np.asarray(image))  # each pixel became a 4x4 block
    assert set(np.unique(near)) == {0, 255}
    lanczos = np.asarray(table.upscale(image, "Lanczos", 24, 16))
    assert lanczos.shape == (16, 24, 3) and len(np.unique(lanczos)) > 2


def test_none_returns_the_image_unchanged():
    image = checker(6, 4)
    assert upscalers.UpscalerTable().upscale(image, "None", 24, 16) is image


def test_target_size():
    assert upscalers.target_size(100, 60, scale=2.5) == (250, 150)
    assert upscalers.target_size(100, 60, to_width=300, to_height=200) == (300, 200)
    with pytest.raises(ValueError, match="positive"):
        upscalers.target_size(100, 60, scale=0)


def test_a_model_upscaler_runs_until_the_target_is_covered_then_fits_exactly():
    calls = []

    def double(image, **kwargs):
        calls.append((image.size, kwargs))
        return image.resize((image.width * 2, image.height * 2), Image.NEAREST)
    table = upscalers.UpscalerTable([upscalers.Upscaler("Double", scale=2, run=double)])
    out = table.upscale(checker(6, 4), "Double", 20, 13, prompt="p")
    assert out.size == (20, 13) and [c[0] for c in calls] == [(6, 4), (12, 8)]  # 24x16 covers 20x13
    assert calls[0][1] == {"prompt": "p"}
    calls.clear()
    table.upscale(checker(6, 4), "Double", 6000, 4000)
    assert len(calls) == upscalers.MODEL_PASSES  # never more passes than A1111 makes


def test_sd_x4_reaches_the_target_size():
    image = checker(12, 8)
    settings = X4Settings(sampling=SamplingSettings(steps=2, sampler_name="Euler", seed=3), tile_size=0)
    x4 = make_tiny_model("tiny-x4")
    table = upscalers.UpscalerTable([upscalers.Upscaler("SD x4", 4, run=lambda im, **kw: upscale_x4(x4, im, settings).image)])
    assert table.upscale(image, "SD x4", 24, 16).size == (24, 16)  # x4 then down to 2x
    assert table.upscale(image, "SD x4", 48, 32).size == (48, 32)
