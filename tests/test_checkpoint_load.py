"""Loading tiny checkpoints end to end: formats, dtypes, yaml beside the file, detection + v-probe,
and the errors a user sees for files that do not fit."""
import dataclasses
import shutil

import pytest
import torch
from safetensors.torch import save_file

from modules.models import detect, loader
from tests.tiny import make_tiny_model, tiny_config_path

SCHEDULE = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
            "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
            "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
            "posterior_mean_coef1", "posterior_mean_coef2")


def state_dict_as(model, dtype):
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(model, path, dtype=torch.float16, yaml=None, drop=(), extra=None):
    sd = {k: v for k, v in state_dict_as(model, dtype).items() if k not in drop}
    sd.update(extra or {})
    if path.suffix == ".safetensors":
        save_file(sd, path)
    else:
        torch.save({"state_dict": sd, "global_step": 1}, path)
    if yaml:
        shutil.copy(tiny_config_path(yaml), path.with_suffix(".yaml"))
    return path


def unet_out(model, x_dtype=torch.float32):
    torch.manual_seed(1)
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 77, 32)
    with torch.no_grad():
        return model.apply_model(x.to(x_dtype), torch.tensor([500]), ctx.to(x_dtype)).float()


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_fp16_file_round_trip_to_fp32(tmp_path, suffix):
    original = make_tiny_model("tiny-v1", seed=3)
    path = save_checkpoint(original, tmp_path / f"m{suffix}", torch.float16, yaml="tiny-v1")
    loaded = loader.load_model(path, dtype=torch.float32)
    expected = state_dict_as(original, torch.float16)
    got = loaded.state_dict()
    assert set(got) == set(expected)
    for k, v in got.items():
        if v.is_floating_point() and k not in SCHEDULE:
            assert v.dtype == torch.float32, k
            assert torch.equal(v, expected[k].float()), k
    assert got["alphas_cumprod"].dtype == torch.float32
    reference = make_tiny_model("tiny-v1", seed=3)
    reference.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in expected.items()})
    assert torch.allclose(unet_out(loaded), unet_out(reference), atol=1e-6)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_bf16_on_disk_fp16_in_memory_and_separate_vae_dtype(tmp_path):
    path = save_checkpoint(make_tiny_model("tiny-v2", seed=1), tmp_path / "m.safetensors", torch.bfloat16,
                           yaml="tiny-v2")
    model = loader.load_model(path, dtype=torch.float16, dtype_vae=torch.float32)
    assert model.model.diffusion_model.out[2].weight.dtype == torch.float16
    assert model.cond_stage_model.state_dict()[next(iter(model.cond_stage_model.state_dict()))].dtype == torch.float16
    assert model.first_stage_model.decoder.conv_out.weight.dtype == torch.float32
    assert model.alphas_cumprod.dtype == torch.float32


def test_same_dtype_load_shares_the_file_mapping(tmp_path):
    """fp32 file into an fp32 model: the parameters are the mmap'd tensors, not copies."""
    path = save_checkpoint(make_tiny_model("tiny-v1"), tmp_path / "m.safetensors", torch.float32, yaml="tiny-v1")
    sd = loader.read_state_dict(path)
    model = loader.model_from_state_dict(sd, tiny_config_path("tiny-v1"))
    key = "model.diffusion_model.out.2.weight"
    assert model.state_dict()[key].data_ptr() == sd[key].data_ptr()


def test_wrapper_ema_extra_keys_and_missing_buffers(tmp_path):
    original = make_tiny_model("tiny-v1", seed=2)
    drop = SCHEDULE + ("cond_stage_model.transformer.text_model.embeddings.position_ids",)
    extra = {"model_ema.decay": torch.tensor(0.9999), "model_ema.diffusion_modelout2weight": torch.zeros(4),
             "some.unused.tensor": torch.ones(3)}
    path = save_checkpoint(original, tmp_path / "m.ckpt", torch.float32, yaml="tiny-v1", drop=drop, extra=extra)
    loaded = loader.load_model(path)
    for name in SCHEDULE:
        assert torch.allclose(getattr(loaded, name), getattr(original, name)), name
    pos = loaded.cond_stage_model.state_dict()["transformer.text_model.embeddings.position_ids"]
    assert torch.equal(pos, torch.arange(pos.shape[-1])[None])
    assert torch.allclose(unet_out(loaded), unet_out(original))


def test_missing_and_misshaped_weights_name_keys_and_config(tmp_path):
    path = save_checkpoint(make_tiny_model("tiny-v1"), tmp_path / "m.safetensors",
                           drop=("model.diffusion_model.out.2.bias",))
    shutil.copy(tiny_config_path("tiny-v1-inpainting"), tmp_path / "m.yaml")
    with pytest.raises(ValueError) as err:
        loader.load_model(path)
    message = str(err.value)
    assert "m.safetensors does not fit config" in message and "m.yaml" in message
    assert "model.diffusion_model.out.2.bias" in message
    assert "model.diffusion_model.input_blocks.0.0.weight: [32, 4, 3, 3] in the file, [32, 9, 3, 3]" in message


def test_tiny_checkpoint_without_yaml_explains_the_remedy(tmp_path):
    path = save_checkpoint(make_tiny_model("tiny-v1"), tmp_path / "tiny.safetensors")
    with pytest.raises(ValueError, match="does not fit config v1-inference.*put its yaml beside it"):
        loader.load_model(path)


def test_yaml_beside_the_file_wins(tmp_path):
    path = save_checkpoint(make_tiny_model("tiny-v2"), tmp_path / "m.safetensors", yaml="tiny-v2-v")
    result = loader.load_checkpoint(path)
    assert result.model.parameterization == "v" and result.config == str(tmp_path / "m.yaml")
    (tmp_path / "m.yaml").unlink()
    shutil.copy(tiny_config_path("tiny-v2"), tmp_path / "m.yaml")
    assert loader.load_model(path).parameterization == "eps"


def tiny_families():
    """The real detection table, with each family's config swapped for its tiny twin."""
    tiny = {"v1-inference": "tiny-v1", "v1-inpainting-inference": "tiny-v1-inpainting",
            "v2-inference": "tiny-v2", "v2-inference-v": "tiny-v2-v", "v2-midas-inference": "tiny-v2-depth",
            "x4-upscaling": "tiny-x4"}
    return tuple(dataclasses.replace(f, config=str(tiny_config_path(tiny[f.config])) if f.config in tiny else f.config,
                                     v_config=str(tiny_config_path(tiny[f.v_config])) if f.v_config else None)
                 for f in detect.FAMILIES)


@pytest.mark.parametrize("name", ["tiny-v1", "tiny-v1-inpainting", "tiny-v2-depth", "tiny-x4"])
def test_detection_recognises_tiny_models(name):
    sd = make_tiny_model(name).state_dict()
    assert detect.detect(sd, tiny_families()).config == str(tiny_config_path(name))


@pytest.mark.parametrize("bias, parameterization", [(3.0, "eps"), (-3.0, "v")])
def test_v_probe_picks_the_config_for_v2(tmp_path, bias, parameterization):
    """A1111's probe: v when mean(UNet(0.5, t=999) - 0.5) < -1. The output bias pushes the tiny
    random UNet to either side of the threshold."""
    model = make_tiny_model("tiny-v2", seed=4)
    with torch.no_grad():
        model.model.diffusion_model.out[2].bias.fill_(bias)
    assert detect.is_v_prediction(model.model.diffusion_model, 32) == (parameterization == "v")
    path = save_checkpoint(model, tmp_path / "m.safetensors", torch.float32)
    result = loader.load_checkpoint(path, families=tiny_families())
    assert result.model.parameterization == parameterization
    assert result.config.endswith("tiny-v2-v.yaml" if parameterization == "v" else "tiny-v2.yaml")
    assert torch.equal(result.model.model.diffusion_model.out[2].bias, model.model.diffusion_model.out[2].bias)


def test_v_probe_on_unmodified_tiny_models_is_consistent():
    for name in ("tiny-v2", "tiny-v2-v"):
        unet = make_tiny_model(name, seed=0).model.diffusion_model
        with torch.no_grad():
            out = unet(torch.full((1, 4, 8, 8), 0.5), torch.tensor([999]), context=torch.full((1, 2, 32), 0.5))
        assert detect.is_v_prediction(unet, 32) == bool((out - 0.5).mean() < -1)
