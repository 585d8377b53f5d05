"""SD3 / SD3.5 at full size on the meta device against the manifests of the published files, and
detection of every layout from fake state dicts (meta tensors with the manifests' shapes)."""
from pathlib import Path

import pytest
import torch

from modules.ldm.mmdit import MMDiTConfig
from modules.ldm.sd3 import vae_config_from_shapes
from modules.models import detect, family, loader

MANIFESTS = Path(__file__).resolve().parent / "data" / "manifests" / "sd3"
LAYOUTS = {  # build_model name -> manifest
    "sd3-medium": "sd3_medium",
    "sd3-medium-incl-clips": "sd3_medium_incl_clips",
    "sd3-medium-incl-clips-t5xxl": "sd3_medium_incl_clips_t5xxlfp16",
    "sd3.5-large": "sd3.5_large",
    "sd3.5-large-turbo": "sd3.5_large_turbo",
    "sd3.5-medium": "sd3.5_medium",
}


def read_manifest(name: str) -> dict[str, tuple[tuple, str]]:
    rows = {}
    for line in (MANIFESTS / f"{name}.keys.tsv").read_text().splitlines():
        key, shape, dtype = line.split("\t")
        rows[key] = (tuple(int(s) for s in shape.split(",")) if shape else (), dtype)
    return rows


def fp8_manifest() -> dict[str, tuple[tuple, str]]:
    """sd3_medium_incl_clips_t5xxlfp8: the fp16 file's keys and shapes, T5 stored as float8_e4m3fn."""
    return {k: (shape, "float8_e4m3fn" if k.startswith("text_encoders.t5xxl.") else dtype)
            for k, (shape, dtype) in read_manifest("sd3_medium_incl_clips_t5xxlfp16").items()}


def meta_state_dict(manifest: dict) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, dtype=getattr(torch, dtype), device="meta") for k, (shape, dtype) in manifest.items()}


def layout(model) -> dict[str, tuple[tuple, str]]:
    return {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()}


def assert_same_layout(ours: dict, expected: dict) -> None:
    assert sorted(set(expected) - set(ours))[:5] == []
    assert sorted(set(ours) - set(expected))[:5] == []
    assert [(k, ours[k], expected[k]) for k in expected if ours[k] != expected[k]][:5] == []


@pytest.mark.parametrize("name", LAYOUTS)
def test_build_model_equals_manifest(name):
    expected = read_manifest(LAYOUTS[name])
    dtype = getattr(torch, next(iter(expected.values()))[1])
    model = loader.build_model(name, device="meta", dtype=dtype)
    assert_same_layout(layout(model), expected)
    assert model.family.name == name.removesuffix("-incl-clips-t5xxl").removesuffix("-incl-clips")


@pytest.mark.parametrize("name", [*LAYOUTS.values(), "fp8"])
def test_model_from_state_dict_equals_manifest(name):
    expected = fp8_manifest() if name == "fp8" else read_manifest(name)
    dtype = torch.float16 if name.startswith("sd3_") or name == "fp8" else torch.bfloat16
    model = loader.model_from_state_dict(meta_state_dict(expected), device="meta", dtype=dtype)
    assert_same_layout(layout(model), expected)  # T5 keeps its storage dtype (fp8 stays fp8)


def test_optional_keys_are_tolerated():
    """logit_scale and CLIP-L's identity text_projection (seen in some all-in-one files) are ignored."""
    expected = read_manifest("sd3_medium_incl_clips")
    extra = {}
    for line in (MANIFESTS / "optional_keys.tsv").read_text().splitlines():
        key, shape, dtype = line.split("\t")
        extra[key] = (tuple(int(s) for s in shape.split(",")) if shape else (), dtype)
    extra["text_encoders.clip_g.transformer.text_model.embeddings.position_ids"] = ((1, 77), "int64")
    model = loader.model_from_state_dict(meta_state_dict({**expected, **extra}), device="meta", dtype=torch.float16)
    assert_same_layout(layout(model), expected)


def test_t5_with_only_one_embedding_name():
    """ComfyUI re-saves keep only `shared.weight`: the encoder table is the same tensor."""
    expected = read_manifest("sd3_medium_incl_clips_t5xxlfp16")
    sd = meta_state_dict(expected)
    del sd["text_encoders.t5xxl.transformer.encoder.embed_tokens.weight"]
    model = loader.model_from_state_dict(sd, device="meta", dtype=torch.float16)
    t5 = model.text_encoders.t5xxl.transformer
    assert t5.encoder.embed_tokens is t5.shared
    assert set(layout(model)) == set(expected)


@pytest.mark.parametrize("manifest, variant, encoders", [
    ("sd3_medium", "sd3-medium", "no text encoders in the file"),
    ("sd3_medium_incl_clips", "sd3-medium", "incl. CLIP-L, CLIP-G"),
    ("sd3_medium_incl_clips_t5xxlfp16", "sd3-medium", "incl. CLIP-L, CLIP-G, T5-XXL"),
    ("sd3.5_large", "sd3.5-large", "no text encoders"),
    ("sd3.5_medium", "sd3.5-medium", "no text encoders"),
])
def test_each_layout_detected(manifest, variant, encoders):
    detection = detect.detect(meta_state_dict(read_manifest(manifest)))
    assert (detection.kind, detection.config) == ("sd3", variant)
    assert family.FAMILIES[variant].title in detection.family and encoders in detection.family


def test_turbo_told_apart_by_file_name():
    sd = meta_state_dict(read_manifest("sd3.5_large_turbo"))
    assert detect.detect(sd, filename="sd3.5_large_turbo.safetensors").config == "sd3.5-large-turbo"
    assert detect.detect(sd, filename="sd3.5_large.safetensors").config == "sd3.5-large"


def test_configs_derived_from_shapes():
    shapes = {k: s for k, (s, _) in read_manifest("sd3.5_medium").items()}
    cfg = MMDiTConfig.from_shapes(shapes)
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.head_dim) == (24, 1536, 24, 64)
    assert (cfg.pos_embed_max_size, cfg.qk_norm, cfg.x_block_self_attn_layers) == (384, True, tuple(range(13)))
    assert (cfg.adm_in_channels, cfg.context_in_features, cfg.in_channels, cfg.patch_size) == (2048, 4096, 16, 2)
    large = MMDiTConfig.from_shapes({k: s for k, (s, _) in read_manifest("sd3.5_large").items()})
    assert (large.depth, large.hidden_size, large.num_heads, large.pos_embed_max_size) == (38, 2432, 38, 192)
    vae = vae_config_from_shapes(shapes)
    assert (vae.z_channels, vae.ch, tuple(vae.ch_mult), vae.num_res_blocks, vae.use_quant_conv) == (16, 128, (1, 2, 4, 4), 2, False)


def test_other_families_keep_their_message():
    with pytest.raises(ValueError, match="not supported yet: this looks like SDXL"):
        detect.detect({"conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
                          "model.diffusion_model.label_emb.0.0.weight": (1280, 2816)})
    with pytest.raises(ValueError, match="not supported yet: this looks like Flux"):
        detect.detect({"double_blocks.0.img_attn.qkv.weight": (9216, 3072)})
    with pytest.raises(ValueError, match="SD3 diffusion model without its VAE"):
        detect.detect({"joint_blocks.0.x_block.attn.qkv.weight": (4608, 1536)})


def test_family_descriptions():
    sd35m = family.FAMILIES["sd3.5-medium"]
    assert (sd35m.prediction, sd35m.conditioning, sd35m.latent.channels) == ("flow", "crossattn+vector", 16)
    assert (sd35m.latent.scale_factor, sd35m.latent.shift_factor, sd35m.schedule.shift) == (1.5305, 0.0609, 3.0)
    assert (sd35m.defaults.width, sd35m.defaults.height, sd35m.defaults.size_step) == (1024, 1024, 16)
    turbo = family.FAMILIES["sd3.5-large-turbo"].defaults
    assert (turbo.steps, turbo.cfg_scale) == (4, 1.0)
    assert family.for_config("/models/x/v2-inference-v.yaml").prediction == "v"
    assert family.for_config("v1-inpainting-inference").title == "SD 1.x inpainting"
    assert family.for_config("sd3.5-large").title == "SD3.5 Large"
    # flow: sigma(t) shifted, model time 1000 * sigma, D = x - sigma * v
    table = sd35m.schedule.table()
    assert table[-1].item() == pytest.approx(1.0) and table[0].item() == pytest.approx(3 * 0.001 / (1 + 2 * 0.001))
    x, v, sigma = torch.ones(2, 16, 2, 2), torch.full((2, 16, 2, 2), 0.5), torch.tensor([1.0, 0.2])
    denoised = sd35m.denoised(x, sigma, v)
    assert torch.allclose(denoised[0], torch.full((16, 2, 2), 0.5)) and torch.allclose(denoised[1], torch.full((16, 2, 2), 0.9))
    assert sd35m.schedule.timestep(torch.tensor(0.25)).item() == 250.0
    preview = sd35m.latent.preview(torch.randn(1, 16, 4, 4))
    assert preview.shape == (1, 3, 4, 4) and 0 <= preview.min() and preview.max() <= 1
