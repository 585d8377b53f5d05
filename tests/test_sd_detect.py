"""Config detection: fake state dicts (meta tensors with the official shapes) pick the right config."""

import pytest
import torch

from modules.models import detect
from tests.manifests import MANIFESTS  # noqa: E402


def manifest_state_dict(config: str) -> dict[str, torch.Tensor]:
    sd = {}
    for line in (MANIFESTS / f"{config}.keys.tsv").read_text().splitlines():
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.split(",")] if shape else []
        sd[key] = torch.empty(dims, dtype=getattr(torch, dtype), device="meta")
    return sd


@pytest.mark.parametrize("config, expected", [
    ("v1-inference", "v1-inference"),
    ("v1-inpainting-inference", "v1-inpainting-inference"),
    ("v2-inference", "v2-inference"),
    ("v2-inference-v", "v2-inference"),  # identical weights: eps vs v is decided by the probe
    ("v2-inpainting-inference", "v2-inpainting-inference"),
    ("v2-midas-inference", "v2-midas-inference"),
    ("x4-upscaling", "x4-upscaling"),
])
def test_each_official_layout_detected(config, expected):
    detection = detect.detect(manifest_state_dict(config))
    assert detection.config == expected
    assert (detection.v_config == "v2-inference-v") == (expected == "v2-inference")


def test_detection_without_text_encoder_uses_unet_layout():
    for config, expected in [("v1-inference", "v1-inference"), ("v2-inpainting-inference", "v2-inpainting-inference")]:
        sd = {k: v for k, v in manifest_state_dict(config).items() if not k.startswith("cond_stage_model.")}
        assert detect.detect(sd).config == expected


def test_extra_ema_keys_do_not_confuse_detection():
    sd = manifest_state_dict("v1-inference")
    sd["model_ema.decay"] = torch.empty((), device="meta")
    sd["model_ema.diffusion_modeltime_embed0weight"] = torch.empty(1280, 320, device="meta")
    assert detect.detect(sd).config == "v1-inference"


def sdxl_like() -> dict[str, tuple]:
    return {
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "conditioner.embedders.1.model.ln_final.weight": (1280,),
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
    }


@pytest.mark.parametrize("shapes, looks_like", [
    (sdxl_like(), "SDXL"),
    ({"model.diffusion_model.label_emb.0.0.weight": (1280, 2560),
      "model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3)}, "SDXL refiner"),
    ({"joint_blocks.0.x_block.attn.qkv.weight": (4608, 1536)}, "an SD3 diffusion model without its VAE"),
    ({"double_blocks.0.img_attn.qkv.weight": (9216, 3072)}, "Flux"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "a LoRA"),
    ({"encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_out.weight": (3, 128, 3, 3)}, "a VAE"),
])
def test_unsupported_layouts_get_a_clear_message(shapes, looks_like):
    with pytest.raises(ValueError, match=f"not supported yet: this looks like {looks_like}"):
        detect.detect(shapes)


def test_sdxl_with_real_tensors_not_half_matched_as_v2():
    sd = {k: torch.empty(s, device="meta") for k, s in sdxl_like().items()}
    sd.update(manifest_state_dict("v2-inference"))  # even with v2-looking parts present
    with pytest.raises(ValueError, match="SDXL"):
        detect.detect(sd)


def test_unknown_layout_message_names_keys():
    with pytest.raises(ValueError, match="not supported yet.*first keys: foo.weight"):
        detect.detect({"foo.weight": (3, 3)})


def test_yaml_beside_checkpoint(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    assert detect.yaml_beside(ckpt) is None
    (tmp_path / "model.yaml").write_text("model: {}")
    assert detect.yaml_beside(ckpt) == tmp_path / "model.yaml"


def test_context_width_from_weights():
    assert detect.context_width(detect.shapes_of(manifest_state_dict("v1-inference"))) == 768
    assert detect.context_width(detect.shapes_of(manifest_state_dict("v2-inference"))) == 1024
