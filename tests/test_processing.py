"""txt2img pipeline on tiny random-weight models: sizes, seeds, variation, hires fix, interrupt/skip,
no state between jobs, hybrid-model and no-model errors, saved PNG infotext."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.jobs import Job
from modules.options import Options
from modules.processing import (
    ProcessingEnv,
    StableDiffusionProcessingTxt2Img,
    process_images,
)
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


@pytest.fixture(scope="module")
def v2v():
    return make_tiny_model("tiny-v2-v")


def make_env(tmp_path=None, job=True, **settings):
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False,
                 **settings})
    return ProcessingEnv(opts=opts, job=Job("test") if job else None, data_dir=tmp_path)


def txt2img(model, env=None, **kw):
    args = dict(prompt="a photo of a cat", negative_prompt="blurry", seed=1234, steps=4, width=64, height=64,
                sampler_name="Euler a", cfg_scale=5.0)
    args.update(kw)
    return process_images(StableDiffusionProcessingTxt2Img(sd_model=model, env=env or make_env(), **args))


def arr(image):
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("name", ["v1", "v2v"])
def test_batches_sizes_seeds_infotexts(name, request):
    model = request.getfixturevalue(name)
    res = txt2img(model, seed=100, batch_size=2, n_iter=2, width=96, height=64)
    assert len(res.images) == 4
    assert all(im.size == (96, 64) for im in res.images)
    assert res.all_seeds == [100, 101, 102, 103] and res.seed == 100
    assert all(arr(im).std() > 0 for im in res.images)  # a picture, not a constant
    assert len(res.infotexts) == 4
    for i, text in enumerate(res.infotexts):
        assert text.startswith("a photo of a cat\nNegative prompt: blurry\n")
        assert f"Seed: {100 + i}," in text and "Size: 96x64" in text and "Sampler: Euler a" in text
    info = res.js()
    assert '"all_seeds": [100, 101, 102, 103]' in info


def test_same_seed_is_bit_identical_and_image_i_uses_seed_plus_i(v1):
    a = txt2img(v1, seed=7, batch_size=2)
    b = txt2img(v1, seed=7, batch_size=2)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.images, b.images, strict=True))
    alone = txt2img(v1, seed=8)
    assert np.abs(arr(alone.images[0]) - arr(a.images[1])).max() <= 2  # batched vs alone: float order only
    other = txt2img(v1, seed=9)
    assert np.abs(arr(other.images[0]) - arr(a.images[0])).max() > 10


def test_variation_strength_zero_and_one(v1):
    # a deterministic sampler: ancestral ones also draw per-step noise from the (main) seed
    base = txt2img(v1, seed=10, sampler_name="Euler")
    var0 = txt2img(v1, seed=10, subseed=77, subseed_strength=0.0, sampler_name="Euler")
    var1 = txt2img(v1, seed=10, subseed=77, subseed_strength=1.0, sampler_name="Euler")
    subseed_image = txt2img(v1, seed=77, sampler_name="Euler")
    half = txt2img(v1, seed=10, subseed=77, subseed_strength=0.5, sampler_name="Euler")
    assert var0.images[0].tobytes() == base.images[0].tobytes()
    assert np.abs(arr(var1.images[0]) - arr(subseed_image.images[0])).max() <= 2
    assert np.abs(arr(half.images[0]) - arr(base.images[0])).max() > 10
    assert "Variation seed: 77" in half.infotexts[0] and "Variation seed strength: 0.5" in half.infotexts[0]


def test_size_not_multiple_of_factor_is_rounded_down_with_warning(v1):
    res = txt2img(v1, width=100, height=70)
    assert res.images[0].size == (96, 64)
    assert "rounded down to 96x64" in res.comments


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest)", "Lanczos"])
def test_hires_fix_output_size_and_infotext(v1, upscaler):
    res = txt2img(v1, width=64, height=48, enable_hr=True, hr_scale=1.5, hr_upscaler=upscaler,
                  hr_second_pass_steps=2, denoising_strength=0.6)
    assert res.images[0].size == (96, 72)  # latent 12x9: odd sizes work
    text = res.infotexts[0]
    for field in ("Size: 64x48", "Hires upscale: 1.5", "Hires steps: 2", f"Hires upscaler: {upscaler}",
                  "Denoising strength: 0.6"):
        assert field in text


def test_hires_resize_to_box_and_own_sampler(v1):
    res = txt2img(v1, width=64, height=64, enable_hr=True, hr_resize_x=96, hr_resize_y=64,
                  hr_sampler_name="Euler", hr_prompt="a dog", denoising_strength=0.5)
    assert res.images[0].size == (96, 64)
    assert "Hires sampler: Euler" in res.infotexts[0] and "Hires prompt: a dog" in res.infotexts[0]
    assert "Hires resize: 96x64" in res.infotexts[0]


def test_unknown_hires_upscaler_is_a_clear_error(v1):
    with pytest.raises(ValueError, match="unknown hires upscaler 'ESRGAN_9x'"):
        txt2img(v1, enable_hr=True, hr_upscaler="ESRGAN_9x")


def _counting_env(action_at: int, action: str, **kw):
    env = make_env(**kw)
    calls = []

    def hook(params):
        calls.append(params.sampling_step)
        if len(calls) == action_at:
            getattr(env.job, action)()

    env.callbacks.cfg.on_cfg_denoiser.append(hook)
    return env, calls


def test_interrupt_during_step_k_returns_within_one_step(v1):
    env, calls = _counting_env(3, "interrupt")
    res = txt2img(v1, env=env, steps=8, n_iter=2, sampler_name="Euler")
    assert len(calls) == 3  # no UNet call after the step that saw the interrupt
    assert len(res.images) == 1 and res.images[0].size == (64, 64)  # what was done, decoded


def test_skip_moves_on_to_the_next_image(v1):
    env, calls = _counting_env(2, "skip")
    res = txt2img(v1, env=env, steps=6, n_iter=2, sampler_name="Euler", seed=40)
    assert len(calls) == 2 + 6  # first image stopped after its 2nd step, second ran in full
    assert len(res.images) == 2
    second_alone = txt2img(v1, steps=6, sampler_name="Euler", seed=41)
    assert res.images[1].tobytes() == second_alone.images[0].tobytes()


def test_progress_and_live_preview(v1):
    env = make_env(live_previews_enable=True, show_progress_every_n_steps=2, show_progress_type="Full")
    seen = []
    original = env.job.set_step
    env.job.set_step = lambda step, preview=None: (seen.append((step, preview)), original(step, preview))
    txt2img(v1, env=env, steps=4, sampler_name="Euler")
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    previews = [pv for s, pv in seen if pv is not None]
    assert len(previews) == 2 and all(isinstance(pv, Image.Image) and pv.size == (64, 64) for pv in previews)
    assert env.job.sampling_steps == 4 and env.job.current_image is previews[-1]


def test_no_state_leaks_between_jobs(v1):
    env = make_env()
    first_settings = dict(seed=3, steps=3, width=64, height=48, sampler_name="DPM++ 2M", cfg_scale=9.0,
                          override_settings={"eta_noise_seed_delta": 31337, "CLIP_stop_at_last_layers": 2})
    second_settings = dict(seed=5, steps=4, width=48, height=64, sampler_name="Euler a", batch_size=2)
    a_then = txt2img(v1, env=env, **first_settings)
    b_then = txt2img(v1, env=env, **second_settings)
    assert env.opts.eta_noise_seed_delta == 0 and env.opts.CLIP_stop_at_last_layers == 1  # restored
    b_alone = txt2img(v1, **second_settings)
    a_alone = txt2img(v1, **first_settings)
    assert [im.tobytes() for im in b_then.images] == [im.tobytes() for im in b_alone.images]
    assert a_then.images[0].tobytes() == a_alone.images[0].tobytes()
    assert "Clip skip: 2" in a_then.infotexts[0] and "Clip skip" not in b_then.infotexts[0]


@pytest.mark.parametrize("name, where", [("tiny-v2-depth", "depth2img"), ("tiny-x4", "Extras")])
def test_hybrid_models_are_refused_for_txt2img(name, where):
    with pytest.raises(ValueError, match=where):
        txt2img(make_tiny_model(name))


def test_inpainting_model_works_for_txt2img():
    res = txt2img(make_tiny_model("tiny-v1-inpainting"), width=64, height=48)
    assert res.images[0].size == (64, 48)


def test_no_model_loaded_says_where_to_put_one():
    env = make_env()
    env.checkpoint_dirs = ("/data/models/Stable-diffusion",)
    with pytest.raises(ValueError, match="no Stable Diffusion model is loaded.*/data/models/Stable-diffusion"):
        process_images(StableDiffusionProcessingTxt2Img(sd_model=None, env=env, prompt="x"))


def test_bad_requests_are_clear_errors(v1):
    with pytest.raises(ValueError, match="steps must be at least 1"):
        txt2img(v1, steps=0)
    with pytest.raises(ValueError, match="larger than the limit"):
        txt2img(v1, width=8192)
    with pytest.raises(ValueError, match="unknown sampler"):
        txt2img(v1, sampler_name="Euler z")


def test_saved_png_carries_the_infotext(v1, tmp_path):
    env = make_env(tmp_path, samples_save=True)
    res = txt2img(v1, env=env, seed=55)
    files = list((tmp_path / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(files) == 1
    with Image.open(files[0]) as saved:
        assert saved.text["parameters"] == res.infotexts[0]
        assert saved.size == (64, 64)
