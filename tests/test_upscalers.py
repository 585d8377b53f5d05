"""The upscaler registry (A1111 names) and the plain Lanczos / Nearest / SD x4 upscalers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import upscalers
from modules.hybrid_sampling import SamplingSettings
from modules.upscaler_x4 import X4Settings
from tests.tiny import make_tiny_model


def checker(w: int, h: int) -> Image.Image:
    arr = ((np.indices((h, w)).sum(axis=0) % 2) * 255).astype(np.uint8)
    return Image.fromarray(np.stack([arr] * 3, axis=2))


def test_names_are_a1111s():
    assert upscalers.upscaler_names() == ["None", "Lanczos", "Nearest", "SD x4", "LDSR"]
    with pytest.raises(ValueError, match="unknown upscaler 'ESRGAN'"):
        upscalers.find_upscaler("ESRGAN")


def test_nearest_replicates_pixels_and_lanczos_smooths():
    image = checker(6, 4)
    near = np.asarray(upscalers.upscale(image, "Nearest", 24, 16))
    assert near.shape == (16, 24, 3)
    assert np.array_equal(near[::4, ::4], np.asarray(image))  # each pixel became a 4x4 block
    assert set(np.unique(near)) == {0, 255}
    lanczos = np.asarray(upscalers.upscale(image, "Lanczos", 24, 16))
    assert lanczos.shape == (16, 24, 3) and len(np.unique(lanczos)) > 2


def test_none_returns_the_image_unchanged():
    image = checker(6, 4)
    assert upscalers.upscale(image, "None", 24, 16) is image


def test_target_size():
    assert upscalers.target_size(100, 60, scale=2.5) == (250, 150)
    assert upscalers.target_size(100, 60, to_width=300, to_height=200) == (300, 200)
    with pytest.raises(ValueError, match="positive"):
        upscalers.target_size(100, 60, scale=0)


def test_sd_x4_needs_the_x4_model_and_reaches_the_target_size():
    image = checker(12, 8)
    with pytest.raises(ValueError, match="x4 upscaler checkpoint"):
        upscalers.upscale(image, "SD x4", 48, 32)
    settings = X4Settings(sampling=SamplingSettings(steps=2, sampler_name="Euler", seed=3), tile_size=0)
    x4 = make_tiny_model("tiny-x4")
    out = upscalers.upscale(image, "SD x4", 24, 16, x4_model=x4, x4_settings=settings)  # x4 then down to 2x
    assert out.size == (24, 16)
    hires = upscalers.as_processing_upscalers(x4, settings)
    assert hires["SD x4"](image, 48, 32).size == (48, 32)
    assert upscalers.as_processing_upscalers(None) == {}
