"""The CompVis latent-diffusion layouts (VQ/KL first-stage zoo, LDSR bsr_sr, cin256-v2, txt2img-1p4B)
built on the meta device from the original yamls, against the key/shape manifests of the real files
(tests/data/manifests/ldm, copied from the project's reference data; see its README)."""
import json
from pathlib import Path

import pytest
import torch

from modules.ldm.config import build_first_stage_from_config, build_from_config, load_config
from modules.ldm.vqgan import VQConfig, VQModel, VQModelInterface, drop_training_keys
from modules.ldsr.checkpoint import ema_key

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "tests" / "data" / "manifests" / "ldm"
CONFIGS = ROOT / "configs" / "ldm"
FIRST_STAGES = ("vq-f4", "vq-f4-noattn", "vq-f8", "vq-f8-n256", "vq-f16", "kl-f4", "kl-f8", "kl-f16", "kl-f32")
LDMS = ("bsr_sr", "cin256-v2", "txt2img-1p4B-eval")


def read_manifest(name: str, suffix: str = "keys") -> list:
    rows = []
    for line in (MANIFESTS / f"{name}.{suffix}.tsv").read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else (), dtype))
    return rows


def layout(model: torch.nn.Module) -> list:
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("name", FIRST_STAGES)
def test_first_stage_zoo_equals_manifest_without_training_keys(name):
    model = build_first_stage_from_config(CONFIGS / f"{name}.yaml", device="meta")
    expected = [row for row in read_manifest(name) if not row[0].startswith("loss.")]
    assert layout(model) == expected  # keys, shapes, dtypes and their order
    assert isinstance(model, VQModel) == name.startswith("vq")
    assert model.downsampling_factor == int(name.split("-f")[1].split("-")[0])


@pytest.mark.parametrize("name", LDMS)
def test_latent_diffusion_checkpoints_equal_manifest(name):
    model = build_from_config(CONFIGS / f"{name}.yaml", device="meta")
    assert layout(model) == read_manifest(name)


def test_level_attention_where_the_config_asks():
    f8 = build_first_stage_from_config(CONFIGS / "vq-f8.yaml", device="meta")  # attn_resolutions [32]
    assert [i for i, level in enumerate(f8.encoder.down) if len(level.attn)] == [3]  # 256/2^3 = 32
    assert [i for i, level in enumerate(f8.decoder.up) if len(level.attn)] == [3]
    noattn = build_first_stage_from_config(CONFIGS / "vq-f4-noattn.yaml", device="meta")
    assert isinstance(noattn.encoder.mid.attn_1, torch.nn.Identity)


def test_bsr_sr_is_ldsr():
    model = build_from_config(CONFIGS / "bsr_sr.yaml", device="meta")
    facts = json.loads((MANIFESTS / "bsr_sr.summary.json").read_text())
    assert model.conditioning_key == facts["conditioning_key"] == "concat"  # from concat_mode, no key in the yaml
    assert model.scale_factor == facts["scale_factor"] == 1.0  # the original default
    assert isinstance(model.first_stage_model, VQModelInterface) and model.vae_scale_factor == 4
    assert model.model.diffusion_model.config.in_channels == 6 and model.latent_channels == 3
    assert type(model.model.diffusion_model.middle_block[1]).__name__ == "AttentionBlock"
    sigmas = ((1 - model.alphas_cumprod) / model.alphas_cumprod).sqrt()
    assert [round(sigmas[0].item(), 6), round(sigmas[-1].item(), 6)] == facts["schedule"]["sigma_min_max(sqrt((1-a)/a))"]
    unet_params = [n for n, _ in model.model.diffusion_model.named_parameters()]
    assert ["model_ema.decay", "model_ema.num_updates", *map(ema_key, unet_params)] == \
        [row[0] for row in read_manifest("bsr_sr", "ema_keys")]


def test_cin256_class_conditioning():
    cfg = load_config(CONFIGS / "cin256-v2.yaml")
    cfg["model"]["params"]["unet_config"]["params"].update(model_channels=32, channel_mult=[1, 2], context_dim=16)
    cfg["model"]["params"]["cond_stage_config"]["params"]["embed_dim"] = 16
    cfg["model"]["params"]["first_stage_config"]["params"]["ddconfig"].update(ch=32, ch_mult=[1, 1, 1])
    torch.manual_seed(0)
    model = build_from_config(cfg)
    c = model.get_learned_conditioning([3, 1000])
    assert c.shape == (2, 1, 16)
    assert torch.equal(c[0, 0], model.cond_stage_model.embedding.weight[3])
    eps = model.apply_model(torch.randn(2, 3, 16, 16), torch.tensor([10, 500]), c)
    assert eps.shape == (2, 3, 16, 16) and model.conditioning_key == "crossattn"
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        model.get_learned_conditioning([1001])


def test_zoo_file_loads_once_its_training_keys_are_dropped():
    params = {"embed_dim": 3, "n_embed": 32, "ddconfig": {
        "double_z": False, "z_channels": 3, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}}
    torch.manual_seed(0)
    source = VQModel(VQConfig.from_params(params))
    zoo = dict(source.state_dict())
    zoo.update({"loss.logvar": torch.zeros(()), "loss.discriminator.main.0.weight": torch.zeros(64, 3, 4, 4),
                "loss.discriminator.main.3.num_batches_tracked": torch.tensor(0),
                "loss.perceptual_loss.scaling_layer.shift": torch.zeros(1, 3, 1, 1)})
    with torch.device("meta"):
        target = VQModel(VQConfig.from_params(params))
    with pytest.raises(RuntimeError, match="loss"):
        target.load_state_dict(zoo, strict=True, assign=True)
    target.load_state_dict(drop_training_keys(zoo), strict=True, assign=True)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(target(x)[0], source(x)[0])


@pytest.mark.parametrize("change,message", [({"remap": "used.npy"}, "remap"), ({"double_z": True}, "double_z")])
def test_unsupported_vq_options_are_named(change, message):
    params = {"embed_dim": 3, "n_embed": 8, "ddconfig": {"double_z": False, "z_channels": 3, "ch_mult": [1]}}
    if "double_z" in change:
        params["ddconfig"].update(change)
    else:
        params.update(change)
    with pytest.raises(ValueError, match=message):
        VQConfig.from_params(params)
