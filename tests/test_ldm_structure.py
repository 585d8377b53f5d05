"""Full-size structure on the meta device against the manifests of real checkpoints; config reading."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from modules.ldm.config import BUNDLED_CONFIGS, build_from_config, load_config
from tests.manifests import MANIFESTS  # noqa: E402


def read_manifest(name: str) -> dict:
    rows = {}
    for line in (MANIFESTS / f"{name}.keys.tsv").read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows[key] = (tuple(int(s) for s in shape.split(",")) if shape else (), dtype)
    return rows


@pytest.mark.parametrize("name", BUNDLED_CONFIGS)
def test_full_size_state_dict_equals_manifest(name):
    model = build_from_config(name, device="meta")
    ours = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}
    expected = read_manifest(name)
    if name == "v2-midas-inference" and not hasattr(model, "depth_model"):
        # MiDaS is modules/ldm/midas.py's (absent: the model is built without depth_model)
        expected = {k: v for k, v in expected.items() if not k.startswith("depth_model.")}
    assert sorted(set(expected) - set(ours))[:5] == []
    assert sorted(set(ours) - set(expected))[:5] == []
    wrong = [(k, ours[k], expected[k]) for k in expected if ours[k] != expected[k]]
    assert wrong[:5] == []


def test_meta_build_allocates_only_the_schedules():
    model = build_from_config("v1-inference", device="meta", dtype=torch.float16)
    real = [name for name, t in model.state_dict().items() if not t.is_meta]
    schedules = json.loads((MANIFESTS / "v1-inference.buffers.json").read_text()).keys() - {"lvlb_weights"}
    # + the 77 position ids, made on the CPU on purpose (see CLIPTextEmbeddings)
    assert sorted(real) == sorted(schedules | {"cond_stage_model.transformer.text_model.embeddings.position_ids"})
    assert model.model.diffusion_model.input_blocks[0][0].weight.dtype == torch.float16
    assert model.alphas_cumprod.dtype == torch.float32  # sigmas need the precision
    assert model.parameterization == "eps" and model.scale_factor == 0.18215
    assert model.vae_scale_factor == 8


@pytest.mark.parametrize("name", ["v1-inference", "x4-upscaling"])
def test_schedule_buffers_equal_the_originals(name):
    model = build_from_config(name, device="meta")
    sd = model.state_dict()
    reference = json.loads((MANIFESTS / f"{name}.buffers.json").read_text())
    checked = 0
    for key, entry in reference.items():
        if not entry["in_state_dict"]:
            continue
        expected = torch.tensor(entry["values"], dtype=torch.float32)
        assert list(sd[key].shape) == entry["shape"]
        torch.testing.assert_close(sd[key], expected, rtol=1e-6, atol=1e-7, msg=key)
        checked += 1
    assert checked == (20 if name == "x4-upscaling" else 12)


def test_x4_and_v_configs():
    x4 = build_from_config("x4-upscaling", device="meta")
    assert x4.vae_scale_factor == 4 and x4.parameterization == "v" and x4.conditioning_key == "hybrid-adm"
    assert x4.low_scale_model.max_noise_level == 350
    sigmas = ((1 - x4.alphas_cumprod) / x4.alphas_cumprod).sqrt()
    assert sigmas[0].item() == pytest.approx(0.010001, abs=1e-6)
    assert sigmas[-1].item() == pytest.approx(36.911912, rel=1e-5)
    assert build_from_config("v2-inference-v", device="meta").parameterization == "v"


def test_users_yaml_with_original_targets(tmp_path):
    path = tmp_path / "my-model.yaml"
    shutil.copy(Path(__file__).resolve().parents[1] / "configs" / "v2-inpainting-inference.yaml", path)
    model = build_from_config(path, device="meta")
    assert type(model).__name__ == "LatentInpaintDiffusion" and model.conditioning_key == "hybrid"
    assert model.model.diffusion_model.input_blocks[0][0].weight.shape[1] == 9


def _with(cfg: dict, section: str, **changes) -> dict:
    cfg = json.loads(json.dumps(cfg))
    target = cfg["model"] if section == "model" else cfg["model"]["params"][section]
    target.update(changes)
    return cfg


@pytest.mark.parametrize("section,changes,message", [
    ("model", {"target": "sgm.models.diffusion.DiffusionEngine"}, "not supported yet"),
    ("model", {"target": "my.own.Diffusion"}, "unknown model target 'my.own.Diffusion'"),
    ("cond_stage_config", {"target": "ldm.modules.encoders.modules.FrozenT5Embedder"}, "unknown cond_stage_config"),
    ("unet_config", {"params": {"use_scale_shift_norm": True}}, "use_scale_shift_norm"),
])
def test_bad_configs_give_clear_errors(section, changes, message):
    cfg = _with(load_config("v1-inference"), section, **changes)
    with pytest.raises(ValueError, match=message):
        build_from_config(cfg, device="meta")


def test_missing_or_unreadable_config(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_config("v3-inference")
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: [a list\n")
    with pytest.raises(ValueError, match="not readable yaml"):
        load_config(bad)
    other = tmp_path / "other.yaml"
    other.write_text("data: {}\n")
    with pytest.raises(ValueError, match="no `model:` section"):
        load_config(other)
