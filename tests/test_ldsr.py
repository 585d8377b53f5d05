"""LDSR as A1111 runs it: DDIM (against diffusers' DDIMScheduler), tiled blending, pre-resize and
padding, the whole pipeline on a tiny random-weight bsr_sr-layout model, and its files (EMA, safe loading)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules.ldm.config import build_from_config
from modules.ldm.latent_diffusion import make_schedule as ddpm_schedule
from modules.ldsr import checkpoint, ddim
from modules.ldsr.tiling import run_tiled, tile_weights
from modules.ldsr.upscale import LDSRSettings, pad_edge, pre_resize, super_resolution

TINY_LDSR = Path(__file__).resolve().parent / "configs" / "tiny-ldsr.yaml"


def tiny_ldsr(seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_from_config(TINY_LDSR)
        with torch.no_grad():  # a codebook spread over the latent range (the default init is ~0)
            model.first_stage_model.quantize.embedding.weight.normal_()
    return model


# --- DDIM ------------------------------------------------------------------------------------------

def test_ddim_timesteps_are_the_ldm_uniform_ones():
    assert list(ddim.ddim_timesteps(100)[[0, 1, -1]]) == [1, 11, 991]
    assert len(ddim.ddim_timesteps(200)) == 200
    assert list(ddim.ddim_timesteps(7)) == [1, 143, 285, 427, 569, 711, 853, 995]  # 1000 // 7 = 142 apart
    assert list(ddim.ddim_timesteps(3)) == [1, 334, 667]  # the original would index step 1000
    with pytest.raises(ValueError, match="between 1 and 1000"):
        ddim.ddim_timesteps(0)


@pytest.mark.parametrize("steps", [100, 20])
def test_ddim_eta_1_matches_diffusers(steps):
    diffusers = pytest.importorskip("diffusers")
    alphas_cumprod = torch.tensor(ddpm_schedule(0.0015, 0.0155)["alphas_cumprod"], dtype=torch.float32)
    schedule = ddim.make_schedule(alphas_cumprod, steps, eta=1.0)
    weight = torch.randn(3, 3, generator=torch.Generator().manual_seed(5)) * 0.3

    def eps(x, t):  # a toy eps model that depends on x and t
        return torch.einsum("oc,bchw->bohw", weight, x) * (t.float()[:, None, None, None] / 1000)

    shape = (1, 3, 8, 8)
    ours = ddim.sample(eps, shape, schedule, torch.Generator().manual_seed(7))

    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0155,
                                  beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                                  steps_offset=1, timestep_spacing="leading")
    ref.set_timesteps(steps)
    assert list(ref.timesteps.numpy()) == list(schedule.timesteps[::-1])
    g = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=g)
    for t in ref.timesteps:
        e = eps(x, t.reshape(1))
        x = ref.step(e, t, x, eta=1.0, variance_noise=torch.randn(shape, generator=g)).prev_sample
    assert ours.abs().mean() > 0.1
    # diffusers builds alphas_cumprod in float32 (ours in float64, as the LDM code): 1.6e-6 apart
    assert (ours - x).abs().max() <= 1e-5 * x.abs().max()


def test_ddim_stops_with_the_last_prediction():
    alphas_cumprod = torch.tensor(ddpm_schedule(0.0015, 0.0155)["alphas_cumprod"], dtype=torch.float32)
    schedule = ddim.make_schedule(alphas_cumprod, 10)
    calls, done = [], []
    out = ddim.sample(lambda x, t: calls.append(int(t)) or torch.zeros_like(x), (1, 3, 4, 4), schedule,
                      torch.Generator().manual_seed(0), callback=lambda d, n: done.append((d, n)),
                      should_stop=lambda: len(calls) == 4)
    assert calls == [901, 801, 701, 601] and done[-1] == (4, 10)
    assert torch.isfinite(out).all()


# --- tiling ----------------------------------------------------------------------------------------

def test_tile_weights_are_the_clipped_border_distance():
    w = tile_weights(128, 128)
    assert w[0, 0] == pytest.approx(0.01) and w[0, 64] == pytest.approx(0.01)  # at the border: clipped
    assert w[64, 64] == pytest.approx(63 / 127, rel=1e-6)  # middle: min distance 63/127 (< 0.5)
    assert w[10, 64] == pytest.approx(10 / 127, rel=1e-6)
    torch.testing.assert_close(w, w.flip(0).flip(1))


@pytest.mark.parametrize("uf", [1, 4])
def test_tiled_blending_keeps_a_constant_field_constant(uf):
    x = torch.randn(1, 3, 192, 320)
    calls = []

    def constant(tile):
        calls.append(tile.shape)
        return torch.full((1, 3, tile.shape[2] * uf, tile.shape[3] * uf), 0.7)

    out = run_tiled(constant, x, 128, 64, uf=uf)
    assert out.shape == (1, 3, 192 * uf, 320 * uf)
    assert len(calls) == 2 * 4
    torch.testing.assert_close(out, torch.full_like(out, 0.7), rtol=1e-6, atol=1e-6)


def test_tiled_identity_gives_the_input_back():
    x = torch.randn(2, 6, 192, 320)
    torch.testing.assert_close(run_tiled(lambda t: t, x, 128, 64), x, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="not covered"):
        run_tiled(lambda t: t, torch.zeros(1, 3, 150, 128), 128, 64)


# --- pre-processing --------------------------------------------------------------------------------

def test_pre_resize_and_edge_padding_as_a1111():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    assert pre_resize(image, 4) is image
    assert pre_resize(image, 2).size == (25, 15)
    assert pre_resize(image, 3).size == (38, 23)  # ceil(37.5), ceil(22.5)
    assert pre_resize(image, 8).size == (100, 60)
    padded = pad_edge(image)
    assert padded.size == (128, 128)  # at least 128
    arr = np.asarray(padded)
    assert np.array_equal(arr[:30, :50], np.asarray(image))
    assert np.array_equal(arr[:30, 50:], np.repeat(np.asarray(image)[:, -1:], 78, axis=1))  # edge repeated
    assert pad_edge(Image.new("RGB", (130, 200))).size == (192, 256)


# --- the pipeline on tiny random weights --------------------------------------------------------------

def test_super_resolution_sizes_and_determinism():
    model = tiny_ldsr()
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (20, 36, 3), dtype=np.uint8))
    steps = []
    out = super_resolution(model, image, LDSRSettings(steps=3, seed=4), callback=lambda d, n: steps.append((d, n)))
    assert out.size == (144, 80) and out.mode == "RGB"
    assert steps == [(1, 3), (2, 3), (3, 3)]
    again = super_resolution(model, image, LDSRSettings(steps=3, seed=4))
    assert np.array_equal(np.asarray(out), np.asarray(again))
    other = super_resolution(model, image, LDSRSettings(steps=3, seed=5))
    assert not np.array_equal(np.asarray(out), np.asarray(other))
    assert super_resolution(model, image, LDSRSettings(steps=1), scale=2).size == (72, 40)  # 18x10, then 4x


def test_super_resolution_interrupted_still_returns_an_image():
    model = tiny_ldsr()
    image = Image.new("RGB", (16, 16), (200, 30, 30))
    calls = []
    out = super_resolution(model, image, LDSRSettings(steps=50), callback=lambda d, n: calls.append(d),
                           should_stop=lambda: len(calls) >= 2)
    assert calls == [1, 2] and out.size == (64, 64)


def test_the_unet_sees_latent_and_low_res_in_128_tiles():
    model = tiny_ldsr()
    seen = []
    unet = model.model.diffusion_model
    handle = unet.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    try:
        super_resolution(model, Image.new("RGB", (130, 70)), LDSRSettings(steps=1))
    finally:
        handle.remove()
    assert seen == [(1, 6, 128, 128)] * 2  # padded to 192x128: 2 x 1 tiles, one DDIM step


# --- files -----------------------------------------------------------------------------------------

def _write(folder: Path, state: dict, yaml: Path = TINY_LDSR, name: str = "model.safetensors") -> checkpoint.LDSRFiles:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save({"state_dict": state, "global_step": 5}, path)
    if yaml is not None:
        (folder / "project.yaml").write_text(yaml.read_text())
    return checkpoint.find_files(folder)


@pytest.mark.parametrize("name", ["model.safetensors", "model.ckpt"])
def test_ema_weights_are_used_when_the_file_has_them(tmp_path, name):
    model = tiny_ldsr(1)
    state = dict(model.state_dict())
    unet_params = [n for n, _ in model.model.diffusion_model.named_parameters()]
    for p in unet_params:
        state[checkpoint.ema_key(p)] = torch.full_like(state["model.diffusion_model." + p], 0.5)
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(10, dtype=torch.int32)
    loaded = checkpoint.load_ldsr(_write(tmp_path, state, name=name))
    assert all(bool((p == 0.5).all()) for p in loaded.model.diffusion_model.parameters())
    torch.testing.assert_close(loaded.first_stage_model.state_dict(), model.first_stage_model.state_dict())
    assert checkpoint.ema_key("input_blocks.0.0.weight") == "model_ema.diffusion_modelinput_blocks00weight"


def test_without_ema_the_weights_load_as_they_are_and_schedules_are_computed(tmp_path):
    model = tiny_ldsr(2)
    state = {k: v for k, v in model.state_dict().items() if k not in checkpoint.SCHEDULE_KEYS}
    loaded = checkpoint.load_ldsr(_write(tmp_path, state))
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_file_errors_are_clear(tmp_path):
    assert checkpoint.find_files(tmp_path) is None
    model = tiny_ldsr()
    # no project.yaml: the bundled full-size bsr_sr.yaml is used, and a tiny file does not fit it
    files = _write(tmp_path / "noyaml", dict(model.state_dict()), yaml=None)
    assert files.config == checkpoint.BUNDLED_YAML
    with pytest.raises(ValueError, match="does not fit bsr_sr.yaml"):
        checkpoint.load_ldsr(files)
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("first_stage_model.decoder")}
    with pytest.raises(ValueError, match="weights missing"):
        checkpoint.load_ldsr(_write(tmp_path / "partial", partial))
    big = _write(tmp_path / "big", dict(model.state_dict()))
    with open(big.config, "a") as f:
        f.write("#" * checkpoint.YAML_SIZE_LIMIT)
    with pytest.raises(ValueError, match="failed download"):
        checkpoint.load_ldsr(big)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "evil"
    folder.mkdir()
    with open(folder / "model.ckpt", "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    (folder / "project.yaml").write_text(TINY_LDSR.read_text())
    from modules.models.state_dict import CheckpointRefused
    with pytest.raises((CheckpointRefused, ValueError), match="refused|not a PyTorch checkpoint"):
        checkpoint.load_ldsr(checkpoint.find_files(folder))
