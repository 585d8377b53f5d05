"""SD3 / SD3.5 through the pipelines on tiny random-weight models (tests/tiny_sd3.py): seeds, img2img,
inpainting, hires fix, conditioning (negative prompt, AND, prompt editing, emphasis, long prompts,
T5), skip-layer guidance, the shift setting, previews, interrupt, infotext round trip, per-family
defaults. The tiny VAE has factor 2 (32x32 images are 16x16 latents)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules import infotext, model_defaults
from modules.conditioning import make_conditioner
from modules.conditioning_sd3 import T5_LIMIT, SD3PromptEncoder
from modules.jobs import Job
from modules.models.family import FAMILIES
from modules.options import Options
from modules.processing import (
    ProcessingEnv,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
    process_images,
    vae,
)
from modules.processing.inpaint import blur_mask
from tests.tiny_sd3 import make_tiny_sd3, train_t5_tokenizer


@pytest.fixture(scope="module")
def sd3():
    return make_tiny_sd3(seed=7, encoders=("clip_l", "clip_g"))


@pytest.fixture(scope="module")
def sd3_t5(tmp_path_factory):
    from modules.ldm.t5_tokenizer import T5Tokenizer

    model = make_tiny_sd3(seed=8)
    model.text_encoders.t5xxl.tokenizer = T5Tokenizer(train_t5_tokenizer(tmp_path_factory.mktemp("t5")))
    return model


def make_env(job=True, **settings):
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False,
                 **settings})
    return ProcessingEnv(opts=opts, job=Job("test") if job else None, conditioner=make_conditioner())


def txt2img(model, env=None, **kw):
    args = dict(prompt="a red circle", negative_prompt="", seed=1234, steps=4, width=32, height=32,
                sampler_name="Euler", cfg_scale=5.0)
    args.update(kw)
    return process_images(StableDiffusionProcessingTxt2Img(sd_model=model, env=env or make_env(), **args))


def img2img(model, image, env=None, **kw):
    args = dict(prompt="a blue square", seed=99, steps=6, width=32, height=32, sampler_name="Euler a", cfg_scale=5.0,
                init_images=[image])
    args.update(kw)
    return process_images(StableDiffusionProcessingImg2Img(sd_model=model, env=env or make_env(), **args))


def arr(image):
    return np.asarray(image, dtype=np.int16)


def picture(seed=0, size=32):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


# --- seeds, batches, img2img, inpainting -------------------------------------------------------------

def test_same_seed_is_bit_identical_and_batches_use_seed_plus_i(sd3):
    a = txt2img(sd3, seed=5, batch_size=2, sampler_name="Euler a")
    b = txt2img(sd3, seed=5, batch_size=2, sampler_name="Euler a")
    assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
    assert a.all_seeds == [5, 6] and all(im.size == (32, 32) for im in a.images)
    alone = txt2img(sd3, seed=6, sampler_name="Euler a")
    assert np.abs(arr(alone.images[0]) - arr(a.images[1])).max() <= 2  # batched vs alone: float order only
    assert np.abs(arr(txt2img(sd3, seed=9).images[0]) - arr(a.images[0])).max() > 10


def test_variation_seed_strength(sd3):
    base = txt2img(sd3, seed=10)
    assert txt2img(sd3, seed=10, subseed=77, subseed_strength=0.0).images[0].tobytes() == base.images[0].tobytes()
    full = txt2img(sd3, seed=10, subseed=77, subseed_strength=1.0)
    assert full.images[0].tobytes() == txt2img(sd3, seed=77).images[0].tobytes()
    half = txt2img(sd3, seed=10, subseed=77, subseed_strength=0.5)
    assert "Variation seed: 77" in half.infotexts[0] and half.images[0].tobytes() != base.images[0].tobytes()


def test_img2img_at_denoising_zero_is_the_vae_round_trip(sd3):
    image = picture(1)
    out = img2img(sd3, image, denoising_strength=0.0)
    round_trip = vae.tensor_to_pil(vae.decode(sd3, vae.encode(sd3, vae.pil_to_tensor([image]))))[0]
    assert out.images[0].tobytes() == round_trip.tobytes()


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_img2img_resize_modes(sd3, mode):
    out = img2img(sd3, picture(2, 48), resize_mode=mode, width=32, height=16, denoising_strength=0.5)
    assert out.images[0].size == (32, 16)


def test_img2img_strength_keeps_the_picture_more_when_low(sd3):
    image = picture(3)
    low = img2img(sd3, image, denoising_strength=0.2).images[0]
    high = img2img(sd3, image, denoising_strength=0.9).images[0]
    round_trip = img2img(sd3, image, denoising_strength=0.0).images[0]
    assert np.abs(arr(low) - arr(round_trip)).mean() < np.abs(arr(high) - arr(round_trip)).mean()


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inpainting_leaves_pixels_outside_the_blurred_mask_unchanged(sd3, fill):
    image = picture(4)
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (16, 0, 32, 32))
    out = img2img(sd3, image, mask=mask, mask_blur=2, inpainting_fill=fill, denoising_strength=0.9).images[0]
    outside = np.asarray(blur_mask(mask, 2, 2)) == 0
    assert (arr(out)[outside] == arr(image)[outside]).all()
    assert np.abs(arr(out)[:, 24:] - arr(image)[:, 24:]).mean() > 5  # the masked half was repainted


def test_inpainting_only_masked_area(sd3):
    image = picture(5)
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 16, 16))
    out = img2img(sd3, image, mask=mask, mask_blur=0, inpaint_full_res=True, inpaint_full_res_padding=4,
                  denoising_strength=0.8).images[0]
    assert out.size == (32, 32)
    assert (arr(out)[20:] == arr(image)[20:]).all()


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_with_latent_and_image_upscalers(sd3, upscaler):
    res = txt2img(sd3, width=16, height=16, enable_hr=True, hr_upscaler=upscaler, hr_scale=2.0,
                  denoising_strength=0.6, hr_sampler_name="DPM++ 2M SDE")
    assert res.images[0].size == (32, 32)
    assert f"Hires upscaler: {upscaler}" in res.infotexts[0] and "Hires sampler: DPM++ 2M SDE" in res.infotexts[0]


def test_live_preview_uses_the_16_channel_factors_and_interrupt_stops(sd3):
    env = make_env(live_previews_enable=True, show_progress_every_n_steps=1)
    calls = []

    def hook(params):
        calls.append(params.sampling_step)
        if len(calls) == 3:
            env.job.interrupt()

    env.callbacks.cfg.on_cfg_denoiser.append(hook)
    res = txt2img(sd3, env=env, steps=8, n_iter=2)
    assert env.job.current_image is not None and env.job.current_image.size == (16, 16)  # latent size
    assert len(calls) == 3 and len(res.images) == 1


def test_a_sampler_without_a_flow_form_is_a_clear_error(sd3):
    with pytest.raises(ValueError, match="DPM fast sampler is not available for SD3"):
        txt2img(sd3, sampler_name="DPM fast")


# --- conditioning ------------------------------------------------------------------------------------------

def captured_conds(env):
    seen = []
    env.callbacks.cfg.on_cfg_denoiser.append(lambda params: seen.append((params.text_cond, params.text_uncond)))
    return seen


def test_negative_prompt_is_the_encoding_of_empty_text_not_zeros(sd3):
    env = make_env()
    seen = captured_conds(env)
    txt2img(sd3, env=env, negative_prompt="", steps=2)
    expected = sd3.get_learned_conditioning([""])
    uncond = seen[0][1]
    assert torch.allclose(uncond["crossattn"], expected["crossattn"], atol=1e-6)
    assert torch.allclose(uncond["vector"], expected["vector"], atol=1e-6) and uncond["vector"].abs().sum() > 0


def test_plain_prompt_encodes_as_the_model_does(sd3_t5):
    enc = SD3PromptEncoder(sd3_t5)
    ours = enc.get_learned_conditioning(["a red circle on the left", ""])
    theirs = sd3_t5.get_learned_conditioning(["a red circle on the left", ""])
    assert torch.allclose(ours["crossattn"], theirs["crossattn"], atol=1e-6)
    assert torch.allclose(ours["vector"], theirs["vector"], atol=1e-6)


def test_emphasis_weights_the_clip_part_only(sd3_t5):
    enc = SD3PromptEncoder(sd3_t5)
    plain = enc.encode_text("a red circle")
    weighted = enc.encode_text("a (red:1.5) circle")
    assert not torch.allclose(plain["crossattn"][:77], weighted["crossattn"][:77])
    assert torch.equal(plain["crossattn"][77:], weighted["crossattn"][77:])  # T5 reads the words only
    assert torch.equal(plain["vector"], weighted["vector"])  # the pooled output is from the token ids
    assert enc.emphasis_used


def test_long_prompts_clip_chunks_and_t5_beyond_77_tokens(sd3_t5):
    enc = SD3PromptEncoder(sd3_t5)
    words = " ".join(["a red circle on the left"] * 16)  # 96 CLIP tokens, ~100 T5 pieces
    long = enc.encode_text(words)
    t5_tokens = len(sd3_t5.text_encoders.t5xxl.tokenizer.encode(words)) + 1
    assert t5_tokens > 77
    assert long["crossattn"].shape == (2 * 77 + t5_tokens, 128)
    assert not enc.messages
    huge = enc.encode_text(" ".join(["a red circle"] * 300))
    assert huge["crossattn"].shape[0] == 77 * 12 + T5_LIMIT  # T5 is cut at its training length
    assert any("T5 reads only the first 512" in m for m in enc.messages)
    res = txt2img(sd3_t5, prompt=words, negative_prompt="blurry", steps=2)  # cond 2 chunks, uncond 1: padded
    assert res.images[0].size == (32, 32)


def test_without_t5_the_context_has_77_zero_tokens(sd3):
    cond = SD3PromptEncoder(sd3).encode_text("a red circle")
    assert cond["crossattn"].shape == (154, 128) and cond["crossattn"][77:].abs().sum() == 0


def test_prompt_editing_and_and_go_through_the_schedule(sd3):
    env = make_env()
    seen = captured_conds(env)
    txt2img(sd3, env=env, prompt="a [red:blue:2] circle AND a square :0.5", steps=4)
    enc = SD3PromptEncoder(sd3)
    conds = [c for c, _ in seen]
    assert all(c["crossattn"].shape[0] == 2 for c in conds)  # two AND sub-prompts per image
    assert torch.allclose(conds[0]["crossattn"][0], enc.encode_text("a red circle ")["crossattn"], atol=1e-6)
    assert torch.allclose(conds[3]["crossattn"][0], enc.encode_text("a blue circle ")["crossattn"], atol=1e-6)
    assert torch.allclose(conds[0]["crossattn"][1], enc.encode_text(" a square ")["crossattn"], atol=1e-6)


def test_the_negative_prompt_changes_the_image(sd3):
    a = txt2img(sd3, negative_prompt="blue").images[0]
    b = txt2img(sd3, negative_prompt="").images[0]
    assert a.tobytes() != b.tobytes()


# --- skip-layer guidance and the shift -----------------------------------------------------------------

def test_skip_layer_guidance_changes_the_image_only_when_enabled(sd3):
    off = txt2img(sd3, steps=8)
    zero = txt2img(sd3, steps=8, slg_scale=0.0, slg_layers="1")
    on = txt2img(sd3, steps=8, slg_scale=3.0, slg_layers="1", slg_start=0.0, slg_end=0.5)
    assert zero.images[0].tobytes() == off.images[0].tobytes() and "SLG" not in off.infotexts[0]
    assert np.abs(arr(on.images[0]) - arr(off.images[0])).max() > 0
    params = infotext.parse_generation_parameters(on.infotexts[0])
    assert (params["SLG scale"], params["SLG layers"], params["SLG start"], params["SLG end"]) == ("3.0", "1", "0.0", "0.5")
    fields, _ = infotext.to_request(params)
    assert (fields["slg_scale"], fields["slg_layers"], fields["slg_start"], fields["slg_end"]) == (3.0, "1", 0.0, 0.5)


def test_skip_layer_guidance_makes_a_third_call_only_on_its_steps(sd3):
    env = make_env()
    calls = []
    original = sd3.apply_model

    def counting(x, t, cond, skip_layers=()):
        calls.append(tuple(skip_layers))
        return original(x, t, cond, skip_layers)

    sd3.apply_model = counting
    try:
        txt2img(sd3, env=env, steps=10, slg_scale=2.5, slg_layers=[1], slg_start=0.1, slg_end=0.5)
    finally:
        del sd3.apply_model
    # SAI's window: steps i with 0.1 * 10 < i < 0.5 * 10, i.e. 2, 3, 4: three extra calls
    assert calls.count((1,)) == 3 and calls.count(()) == 10


def test_skip_layer_guidance_refuses_layers_the_model_lacks(sd3):
    with pytest.raises(ValueError, match="this model has 2 joint blocks"):
        txt2img(sd3, slg_scale=2.5)  # the default layers 7, 8, 9


def test_shift_setting_changes_the_image_and_is_in_the_infotext(sd3):
    base = txt2img(sd3, steps=6)
    same = txt2img(sd3, steps=6, override_settings={"flow_shift": 3.0})
    shifted = txt2img(sd3, steps=6, override_settings={"flow_shift": 1.5})
    assert same.images[0].tobytes() == base.images[0].tobytes() and "Shift" not in same.infotexts[0]
    assert shifted.images[0].tobytes() != base.images[0].tobytes() and "Shift: 1.5" in shifted.infotexts[0]
    assert infotext.to_request(infotext.parse_generation_parameters(shifted.infotexts[0]))[1]["flow_shift"] == 1.5


# --- per-family defaults ------------------------------------------------------------------------------------

def test_family_defaults_for_the_ui(tmp_path, sd3):
    turbo = model_defaults.of_family(FAMILIES["sd3.5-large-turbo"])
    assert (turbo.steps, turbo.cfg_scale, turbo.sampler, turbo.width, turbo.size_step) == (4, 1.0, "Euler", 1024, 16)
    medium = model_defaults.of_family(FAMILIES["sd3.5-medium"])
    assert medium.flow and "DPM fast" not in medium.samplers and "Align Your Steps" not in medium.schedulers
    v1 = model_defaults.for_checkpoint(None, None, native_size=32)
    assert (v1.width, v1.size_step, v1.flow) == (32, 8, False) and "DPM fast" in v1.samplers
    path = tmp_path / "tiny.safetensors"
    state = {k: v.contiguous() for k, v in sd3.state_dict().items() if k.startswith(("model.", "first_stage_model."))}
    save_file(state, str(path))
    from_file = model_defaults.for_checkpoint(None, path)
    assert (from_file.family, from_file.width, from_file.size_step) == ("sd3", 1024, 16)
    save_file(state, str(path), metadata={"modelspec.resolution": "32x32"})
    assert model_defaults.for_checkpoint(None, path).width == 32
    assert model_defaults.for_checkpoint(sd3, path, native_size=512).width == 32  # the file says, not the yaml rule


# --- through the HTTP API, unchanged ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd3_ctx(tmp_path_factory):
    """An app context over a data dir with a tiny SD3 checkpoint (CLIP-L/G in the file) and a tiny v1 one."""
    from modules import startup
    from tests.api_support import make_context, write_tiny_checkpoint
    from tests.tiny_sd3 import write_checkpoint

    root = tmp_path_factory.mktemp("sd3-api")
    write_checkpoint(root / "models" / "Stable-diffusion" / "tiny-sd3.safetensors", make_tiny_sd3(seed=3),
                     ("clip_l", "clip_g"))
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "tiny-v1", "tiny-v1", seed=1)
    ctx = make_context(root)
    startup.attach_services(ctx)
    ctx.opts.set("sd_model_checkpoint", "tiny-sd3.safetensors")
    return ctx


@pytest.fixture(scope="module")
def client(sd3_ctx):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import routes

    app = FastAPI()
    routes.install(app, sd3_ctx)
    return TestClient(app, raise_server_exceptions=False)


API = "/sdapi/v1"
SMALL = {"width": 32, "height": 32, "steps": 4, "seed": 3, "cfg_scale": 4}


def test_api_lists_the_family_and_generates_with_an_sd3_checkpoint(client):
    import json

    from tests.api_support import b64_image, png_b64

    models = client.get(f"{API}/sd-models").json()
    assert models[0]["family"].startswith("SD3 (other sizes)")
    r = client.post(f"{API}/txt2img", json={**SMALL, "prompt": "a red circle", "sampler_name": "Euler a",
                                             "slg_scale": 2.0, "slg_layers": [1]})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert "SLG scale: 2.0" in info["infotexts"][0] and b64_image(r.json()["images"][0]).size == (32, 32)
    again = client.post(f"{API}/txt2img", json={**SMALL, "infotext": info["infotexts"][0]})
    assert again.status_code == 200, again.text
    assert again.json()["images"][0] == r.json()["images"][0]  # pasted back
    r = client.post(f"{API}/img2img", json={**SMALL, "prompt": "a blue square", "init_images": [png_b64(picture(6))],
                                             "denoising_strength": 0.5, "override_settings": {"flow_shift": 2.0}})
    assert r.status_code == 200, r.text
    assert "Shift: 2.0" in json.loads(r.json()["info"])["infotexts"][0]


def test_api_refuses_what_an_sd3_model_cannot_do_with_the_reason(client):

    r = client.post(f"{API}/txt2img", json={**SMALL, "sampler_name": "DPM adaptive"})
    assert r.status_code == 422 and "not available for SD3" in r.text
    r = client.post(f"{API}/txt2img", json={**SMALL, "scheduler": "Align Your Steps"})
    assert r.status_code == 422 and "SD 1.5's noise levels" in r.text
    r = client.post(f"{API}/txt2img", json={**SMALL, "slg_scale": 1.0, "slg_layers": "7,x"})
    assert r.status_code == 422 and "slg_layers" in r.text
    r = client.post(f"{API}/txt2img", json={**SMALL, "slg_scale": 1.0, "slg_start": 0.5, "slg_end": 0.2})
    assert r.status_code == 422 and "slg_end" in r.text
    r = client.post(f"{API}/txt2img", json={**SMALL, "prompt": "<lora:nothing:1> a red circle"})
    assert r.status_code == 200  # a LoRA tag is reported, never a crash


@pytest.mark.slow  # loads the extensions: about 9 s
def test_xyz_plot_axes_for_sd3(tmp_path):
    """The X/Y/Z plot over the SLG scale and the shift, with a sampler axis, on an SD3 checkpoint."""
    from modules import startup
    from modules.plugins.manager import load_extensions
    from modules.processing import objects as pt
    from tests.api_support import make_context
    from tests.tiny_sd3 import write_checkpoint
    from webui.ui import scripts_ui

    write_checkpoint(tmp_path / "models" / "Stable-diffusion" / "tiny-sd3.safetensors", make_tiny_sd3(seed=3),
                     ("clip_l", "clip_g"))
    ctx = make_context(tmp_path)
    ctx.opts.set("samples_save", False)
    load_extensions(ctx)
    scripts_ui.attach(ctx)
    runner = ctx.services.scripts.runner(False)
    script = next(s for s in runner.selectable_scripts if s.title() == "X/Y/Z plot")
    args = runner.default_script_args()
    args[0] = runner.selectable_scripts.index(script) + 1
    for offset, value in enumerate(["SLG scale", "0, 3", "Shift", "0, 1.5", "Sampler", "Euler, DPM++ 2M SDE"]):
        args[script.args_from + offset] = value
    args[script.args_from + 7] = True  # include lone images

    def job():
        p = pt.StableDiffusionProcessingTxt2Img(prompt="a red circle", width=32, height=32, seed=1, steps=4,
                                                slg_layers="1", slg_start=0.0, slg_end=1.0)
        p.sd_model = startup.current_model(ctx).model
        p.env = pt.ProcessingEnv.from_context(ctx)
        return p

    processed = runner.run(job(), *args)
    cells, texts = processed.images[-8:], processed.infotexts[-8:]
    assert len(cells) == 8 and len({c.tobytes() for c in cells}) == 8
    assert "SLG" not in texts[0] and "SLG scale: 3.0" in texts[1] and "Shift: 1.5" in texts[2]
    assert "Sampler: DPM++ 2M SDE" in texts[7] and "Shift: 1.5" in texts[7] and "SLG scale: 3.0" in texts[7]


def test_nv_and_cpu_noise_sources_on_16_channel_latents(sd3):
    nv = txt2img(sd3, override_settings={"randn_source": "NV"})
    assert nv.images[0].tobytes() == txt2img(sd3, override_settings={"randn_source": "NV"}).images[0].tobytes()
    cpu = txt2img(sd3, override_settings={"randn_source": "CPU"})
    assert nv.images[0].tobytes() != cpu.images[0].tobytes() and "RNG: NV" in nv.infotexts[0]


def test_depth2img_with_an_sd3_model_says_it_needs_the_sd2_depth_model(sd3_ctx):
    from modules.errors import RequestError
    from modules.generation import GenerationRequest, run

    sd3_ctx.models.load("tiny-sd3.safetensors")
    with pytest.raises(RequestError, match="depth2img needs a depth model .* the loaded checkpoint is SD3"):
        run(sd3_ctx, GenerationRequest("depth2img", {"image": picture(7), "steps": 2}))


def test_the_tabs_take_the_family_defaults_when_the_model_changes(sd3_ctx):
    """UiState.family_updates (what the status line's change event runs): v1 -> SD3 gives the SD3
    family's size, size step, sampler list and the skip-layer accordion; the same family again: nothing."""
    from types import SimpleNamespace

    import gradio as gr

    from webui.ui.ui_state import UiState

    sd3_ctx.models.load("tiny-v1.safetensors")
    ui = UiState.from_context(sd3_ctx)
    assert ui.defaults.family == "v1-inference" and not ui.defaults.flow
    keys = ["sampler", "scheduler", "steps", "width", "height", "cfg_scale", "slg", "hr_sampler"]
    tab = SimpleNamespace(family_widgets={k: None for k in keys})
    v1_key = ui.defaults.key
    assert all(u == gr.skip() for u in ui.family_updates(v1_key, [tab]))
    sd3_ctx.models.load("tiny-sd3.safetensors")
    key, *updates = ui.family_updates(v1_key, [tab])
    by_key = dict(zip(keys, updates, strict=True))
    assert key == "sd3 1024x1024" and by_key["width"]["value"] == 1024 and by_key["width"]["step"] == 16
    assert by_key["slg"]["visible"] is True and "DPM fast" not in by_key["sampler"]["choices"]
    assert (by_key["steps"]["value"], by_key["cfg_scale"]["value"], by_key["sampler"]["value"]) == (28, 5.0, "Euler")
    assert "Align Your Steps" not in by_key["scheduler"]["choices"]
