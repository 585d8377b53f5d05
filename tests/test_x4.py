"""SD x4 upscaler: checkpoint layout (full size, meta device), tiny end-to-end runs, tiling and seams."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from modules.ldm.config import build_from_config
from modules.ldm.latent_diffusion import LatentUpscaleDiffusion
from modules.processing.hybrid_sampling import SamplingSettings
from modules.processing.upscaler_x4 import X4Settings, upscale_x4
from tests.manifests import MANIFESTS  # noqa: E402
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def x4():
    return make_tiny_model("tiny-x4")


def smooth_image(w: int, h: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / w * 3 + yy / h * 2)], axis=2)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def settings(**kw) -> X4Settings:
    sampling = SamplingSettings(prompt="a photo", negative_prompt="blurry", steps=3, cfg_scale=4.0,
                                sampler_name="Euler", seed=7)
    return X4Settings(sampling=sampling, **kw)


def test_full_size_x4_matches_checkpoint_layout():
    model = build_from_config("x4-upscaling", device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {}
    for line in (MANIFESTS / "x4-upscaling.keys.tsv").read_text().splitlines():
        key, shape, _ = line.split("\t")
        expected[key] = tuple(int(s) for s in shape.split(",")) if shape else ()
    assert ours == expected
    assert model.model.diffusion_model.config.in_channels == 7 and model.parameterization == "v"
    assert model.scale_factor == pytest.approx(0.08333) and model.vae_scale_factor == 4
    buffers = json.loads((MANIFESTS / "x4-upscaling.buffers.json").read_text())
    low = {k: v for k, v in buffers.items() if k.startswith("low_scale_model.")}
    assert len(low) == 8
    state = model.state_dict()
    for key, entry in low.items():
        torch.testing.assert_close(state[key], torch.tensor(entry["values"], dtype=torch.float32),
                                   rtol=1e-5, atol=1e-7)


def test_output_is_four_times_the_input(x4):
    result = upscale_x4(x4, smooth_image(28, 20), settings(tile_size=0))
    assert result.image.size == (112, 80)
    assert "SD x4 noise level: 20" in result.infotext and "Seed: 7" in result.infotext
    again = upscale_x4(x4, smooth_image(28, 20), settings(tile_size=0))
    assert np.array_equal(np.asarray(result.image), np.asarray(again.image))  # seeded


def test_noise_level_reaches_the_unet(x4):
    a = np.asarray(upscale_x4(x4, smooth_image(16, 16), settings(noise_level=20)).image, dtype=np.int16)
    b = np.asarray(upscale_x4(x4, smooth_image(16, 16), settings(noise_level=300)).image, dtype=np.int16)
    assert np.abs(a - b).max() > 0


def test_tiled_output_has_the_same_size(x4):
    result = upscale_x4(x4, smooth_image(44, 30), settings(tile_size=16, tile_overlap=4))
    assert result.image.size == (176, 120)
    assert "SD x4 tiles: 16/4" in result.infotext


def test_bad_settings_are_clear_errors(x4):
    with pytest.raises(ValueError, match="noise level"):
        upscale_x4(x4, smooth_image(16, 16), settings(noise_level=350))
    with pytest.raises(ValueError, match="tile overlap"):
        upscale_x4(x4, smooth_image(16, 16), settings(tile_size=16, tile_overlap=12))
    with pytest.raises(ValueError, match="x4 upscaler checkpoint"):
        upscale_x4(make_tiny_model("tiny-v2"), smooth_image(16, 16), settings())


# --- seams: an exactly solvable UNet inside the real tiny x4 model -----------------------------

class GaussianV(nn.Module):
    """v-prediction of the exact denoiser for latents x0 ~ N(mu, s^2), mu = a fixed linear map of the
    low-res RGB channels of the input: a pointwise "UNet", so a tile's latent equals the whole image's
    latent there, and any tile misplacement or seam is the pipeline's, not the network's."""

    def __init__(self, alphas_cumprod: torch.Tensor, config, s: float = 0.02):
        super().__init__()
        self.config = config  # the UNet config it stands in for (7 input channels)
        self.s = s
        self.register_buffer("log_sigmas", ((1 - alphas_cumprod) / alphas_cumprod).sqrt().log())
        self.register_buffer("mix", torch.tensor([[0.5, 0.3, 0.2], [-0.4, 0.6, 0.1], [0.2, -0.3, 0.7],
                                                  [0.3, 0.3, -0.5]]))

    def forward(self, x, t, context=None, y=None):
        x_t, low = x[:, :4], x[:, 4:7]
        mu = torch.einsum("ck,bkhw->bchw", self.mix, low)
        lo, hi = t.floor().long().clamp(0, 999), t.ceil().long().clamp(0, 999)
        w = (t - t.floor()).view(-1, 1, 1, 1)
        sigma = ((1 - w) * self.log_sigmas[lo].view(-1, 1, 1, 1) + w * self.log_sigmas[hi].view(-1, 1, 1, 1)).exp()
        a = 1 / (1 + sigma ** 2)  # alpha_bar
        x0 = mu + self.s ** 2 * a.sqrt() / (a * self.s ** 2 + 1 - a) * (x_t - a.sqrt() * mu)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * x0


def _largest_steps(im: np.ndarray, axis: int) -> np.ndarray:
    """The largest jump between neighbouring pixels, per gap between two columns (axis 1) or rows (0)."""
    return np.abs(np.diff(im, axis=axis)).max(axis=(0, 2) if axis == 1 else (1, 2))


def test_tiling_has_no_visible_seams_on_a_smooth_input(x4):
    exact = LatentUpscaleDiffusion(x4.config, GaussianV(x4.alphas_cumprod, x4.model.diffusion_model.config),
                                   x4.first_stage_model, x4.cond_stage_model, x4.low_scale_model).eval()
    image = smooth_image(48, 40)

    def upscaled(overlap: int) -> np.ndarray:
        out = upscale_x4(exact, image, settings(tile_size=24, tile_overlap=overlap, noise_level=0)).image
        return np.asarray(out, dtype=np.float32)

    # Tiles of 24 low-res px: starts 0, 16, 24 across (overlap 8) and 0, 16 down; the borders are the
    # tiles' first/last output columns and rows. Each tile is decoded alone, so the VAE's GroupNorm
    # statistics (and its attention) differ per tile: tiles disagree, and only the blending hides it.
    # Threshold: a seam is a border step that stands out from the picture's own texture, i.e. more
    # than twice the median over all gaps of the largest step across that gap. The control below
    # (no overlap: tiles pasted edge to edge) shows the criterion does catch a seam.
    feathered = upscaled(8)
    assert feathered.shape == (160, 192, 3)
    steps_x, steps_y = _largest_steps(feathered, 1), _largest_steps(feathered, 0)
    for bx in (64, 96, 160):
        assert steps_x[bx - 1] <= 2 * np.median(steps_x), f"seam at x={bx}"
    for by in (64, 96):
        assert steps_y[by - 1] <= 2 * np.median(steps_y), f"seam at y={by}"
    pasted = upscaled(0)  # tiles at 0 and 24 across: a hard border at x = 96
    pasted_steps = _largest_steps(pasted, 1)
    assert pasted_steps[96 - 1] > 2 * np.median(pasted_steps)
