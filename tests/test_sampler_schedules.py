"""A1111 1.10's newer schedule types (KL Optimal, Align Your Steps, Beta) and the schedule settings
(rho, the Beta parameters, discarding the penultimate sigma): values, and that a job uses and records
them in the infotext."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modules import infotext
from modules.sampling import samplers
from modules.sampling.schedules import AYS_SD15, find_scheduler
from tests.test_processing import arr, make_env, txt2img
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


@pytest.fixture(scope="module")
def denoiser(v1):
    return samplers.make_denoiser(v1)


def sigmas(denoiser, scheduler, steps, **options):
    return samplers.get_sigmas(samplers.find_sampler("Euler"), steps, denoiser, scheduler, **options)


def test_kl_optimal_is_even_in_arctan_sigma_and_ends_at_sigma_min(denoiser):
    s = sigmas(denoiser, "KL Optimal", 8)
    smin, smax = float(denoiser.sigmas[0]), float(denoiser.sigmas[-1])
    assert len(s) == 9
    angles = torch.arctan(s.double())
    assert torch.allclose(angles.diff(), torch.full((8,), (math.atan(smin) - math.atan(smax)) / 8, dtype=torch.float64),
                          atol=1e-5)
    assert s[0].item() == pytest.approx(smax, rel=1e-5)
    assert s[-1].item() == pytest.approx(smin, rel=1e-5)  # as A1111: no final 0


def test_align_your_steps_is_nvidia_table_or_its_log_linear_interpolation(denoiser):
    s = sigmas(denoiser, "align_your_steps", 11)
    assert np.allclose(s.numpy(), [*AYS_SD15, 0.0], rtol=1e-6)
    fine = sigmas(denoiser, "Align Your Steps", 21)  # every other point is a table point
    assert np.allclose(fine[:-1:2].numpy(), AYS_SD15, rtol=1e-5)
    mid = fine[1:-1:2].numpy()
    assert np.allclose(mid, np.sqrt(np.array(AYS_SD15[:-1]) * np.array(AYS_SD15[1:])), rtol=1e-5)  # log midpoints
    assert fine[-1] == 0


def test_beta_schedule_quantiles(denoiser):
    smin, smax = float(denoiser.sigmas[0]), float(denoiser.sigmas[-1])
    flat = sigmas(denoiser, "beta", 6, alpha=1.0, beta=1.0)  # Beta(1, 1) is uniform: a straight line
    assert np.allclose(flat[:-1].numpy(), np.linspace(smax, smin, 6), rtol=1e-5)
    s = sigmas(denoiser, "Beta", 7)  # default 0.6 / 0.6: symmetric, denser at both ends
    body = s[:-1].double().numpy()
    assert np.allclose(body - smin, (smax - body)[::-1], rtol=1e-4, atol=1e-4)
    gaps = -np.diff(body)
    assert gaps[3] > gaps[0] and gaps[3] > gaps[-1]
    assert s[-1] == 0


@pytest.mark.parametrize("name", ["KL Optimal", "Align Your Steps", "Beta"])
def test_new_schedules_generate_and_are_in_the_infotext(v1, name):
    res = txt2img(v1, scheduler=name, sampler_name="DPM++ 2M", steps=5)
    assert f"Schedule type: {name}" in res.infotexts[0]
    assert arr(res.images[0]).std() > 0


def test_rho_setting_changes_the_karras_schedule_and_is_recorded(v1):
    plain = txt2img(v1, scheduler="Karras", sampler_name="Euler")
    tuned = txt2img(v1, scheduler="Karras", sampler_name="Euler", env=make_env(rho=3.0))
    assert "Schedule rho" not in plain.infotexts[0]
    assert "Schedule rho: 3.0" in tuned.infotexts[0]
    assert not np.array_equal(arr(plain.images[0]), arr(tuned.images[0]))
    same = txt2img(v1, scheduler="Karras", sampler_name="Euler", env=make_env(rho=7.0))  # Karras' own rho
    assert "Schedule rho" not in same.infotexts[0]
    assert np.array_equal(arr(plain.images[0]), arr(same.images[0]))


def test_beta_settings_are_used_recorded_and_pasted_back(v1):
    default = txt2img(v1, scheduler="Beta", sampler_name="Euler")
    tuned = txt2img(v1, scheduler="Beta", sampler_name="Euler", env=make_env(beta_dist_alpha=0.3))
    assert "Beta schedule alpha: 0.6, Beta schedule beta: 0.6" in default.infotexts[0]
    assert "Beta schedule alpha: 0.3" in tuned.infotexts[0]
    assert not np.array_equal(arr(default.images[0]), arr(tuned.images[0]))
    _, settings = infotext.to_request(infotext.parse_generation_parameters(tuned.infotexts[0]))
    assert settings["beta_dist_alpha"] == 0.3 and settings["beta_dist_beta"] == 0.6


def test_discard_penultimate_sigma_setting(v1, denoiser):
    info = samplers.find_sampler("Euler")
    kept = samplers.get_sigmas(info, 4, denoiser, "Karras")
    dropped = samplers.get_sigmas(info, 4, denoiser, "Karras", always_discard_next_to_last_sigma=True)
    assert len(kept) == len(dropped) == 5 and not torch.equal(kept, dropped)
    res = txt2img(v1, scheduler="Karras", sampler_name="Euler", env=make_env(always_discard_next_to_last_sigma=True))
    assert "Discard penultimate sigma: True" in res.infotexts[0]
    _, settings = infotext.to_request(infotext.parse_generation_parameters(res.infotexts[0]))
    assert settings["always_discard_next_to_last_sigma"] is True


def test_unknown_schedule_names_the_new_ones():
    with pytest.raises(ValueError, match="Align Your Steps"):
        find_scheduler("bong tangent")


def test_depth2img_reads_and_records_the_schedule_settings():
    from PIL import Image

    from modules.options import Options
    from modules.processing import depth2img
    from modules.processing.hybrid_sampling import SamplingSettings

    model = make_tiny_model("tiny-v2-depth")
    image = Image.new("RGB", (64, 64), (120, 60, 30))
    results = []
    for alpha in (0.6, 0.3):
        opts = Options()
        opts.set("beta_dist_alpha", alpha)
        settings = SamplingSettings(prompt="a house", steps=3, sampler_name="Euler", scheduler="Beta", seed=5, opts=opts)
        depth_map = Image.linear_gradient("L").resize((64, 64))  # this tiny model has no MiDaS
        request = depth2img.Depth2ImgRequest(image=image, settings=settings, denoising_strength=0.8,
                                             depth_map=depth_map)
        results.append(depth2img.depth2img(model, request))
    assert "Beta schedule alpha: 0.6" in results[0].infotexts[0]
    assert "Beta schedule alpha: 0.3" in results[1].infotexts[0]
    assert not np.array_equal(arr(results[0].images[0]), arr(results[1].images[0]))
