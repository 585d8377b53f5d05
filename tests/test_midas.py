"""MiDaS DPT-Hybrid: checkpoint layout (full size, meta device) and parity with an independent
implementation (transformers' DPTForDepthEstimation, hybrid) on the same tiny random weights."""
from __future__ import annotations

import re

import pytest
import torch

from modules.ldm.config import build_from_config
from modules.ldm.midas import MidasConfig, MiDaSInference, build_depth_model
from tests.manifests import MANIFESTS  # noqa: E402

MANIFEST = MANIFESTS / "v2-midas-inference.keys.tsv"
TINY = dict(stem_chs=16, layers=(1, 1, 1), channels=(32, 64, 128), norm_groups=8, embed_dim=64, depth=4,
            num_heads=2, hooks=(2, 3), img_size=64, features=32, num_classes=10)


def tiny_midas(seed: int = 0) -> MiDaSInference:
    """Tiny DPT-Hybrid with every parameter random (norm affines too, so nothing is an identity)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MiDaSInference(MidasConfig(**TINY)).eval()
        for p in model.parameters():
            p.data.normal_(0, 0.2)
    return model


def _manifest(prefix: str) -> dict:
    out = {}
    for line in MANIFEST.read_text().splitlines():
        key, shape, _ = line.split("\t")
        if key.startswith(prefix):
            out[key] = tuple(int(s) for s in shape.split(",")) if shape else ()
    return out


def test_full_size_depth_model_matches_checkpoint_layout():
    model = build_from_config("v2-midas-inference", device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("depth_model.")}
    expected = _manifest("depth_model.")
    assert len(expected) == 368
    assert ours == expected


def test_config_rejects_other_midas_types():
    with pytest.raises(ValueError, match="dpt_hybrid"):
        build_depth_model({"model_type": "dpt_large"})


def test_output_is_nonnegative_depth_at_input_size():
    model = tiny_midas()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        depth = model(x)
    assert depth.shape == (2, 1, 64, 96)
    assert (depth >= 0).all() and depth.max() > 0
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.randn(1, 3, 64, 80))


# --- parity with transformers' DPT-Hybrid -------------------------------------------------------

def _hf_model():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.DPTConfig(
        is_hybrid=True, hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=256,
        image_size=64, patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[32, 64, 64, 64],
        reassemble_factors=[1, 1, 1, 0.5], fusion_hidden_size=32, backbone_featmap_shape=[1, 128, 4, 4],
        neck_ignore_stages=[0, 1], readout_type="project", layer_norm_eps=1e-6, hidden_act="gelu",
        backbone_config=dict(model_type="bit", depths=[1, 1, 1], hidden_sizes=[32, 64, 128, 256],
                             embedding_size=16, num_groups=8, global_padding="same", layer_type="bottleneck",
                             out_features=["stage1", "stage2", "stage3"], embedding_dynamic_padding=True))
    return transformers.DPTForDepthEstimation(cfg).eval()


RENAMES = [  # our key (under MiDaSInference) -> transformers' key, applied in order
    (r"^model\.pretrained\.model\.cls_token$", "dpt.embeddings.cls_token"),
    (r"^model\.pretrained\.model\.pos_embed$", "dpt.embeddings.position_embeddings"),
    (r"^model\.pretrained\.model\.patch_embed\.backbone\.stem\.conv\.", "dpt.embeddings.backbone.bit.embedder.convolution."),
    (r"^model\.pretrained\.model\.patch_embed\.backbone\.stem\.norm\.", "dpt.embeddings.backbone.bit.embedder.norm."),
    (r"^model\.pretrained\.model\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.",
     r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2."),
    (r"^model\.pretrained\.model\.patch_embed\.proj\.", "dpt.embeddings.projection."),
    (r"^model\.pretrained\.model\.blocks\.(\d+)\.norm1\.", r"dpt.encoder.layer.\1.layernorm_before."),
    (r"^model\.pretrained\.model\.blocks\.(\d+)\.norm2\.", r"dpt.encoder.layer.\1.layernorm_after."),
    (r"^model\.pretrained\.model\.blocks\.(\d+)\.attn\.proj\.", r"dpt.encoder.layer.\1.attention.output.dense."),
    (r"^model\.pretrained\.model\.blocks\.(\d+)\.mlp\.fc1\.", r"dpt.encoder.layer.\1.intermediate.dense."),
    (r"^model\.pretrained\.model\.blocks\.(\d+)\.mlp\.fc2\.", r"dpt.encoder.layer.\1.output.dense."),
    (r"^model\.pretrained\.model\.norm\.", "dpt.layernorm."),
    (r"^model\.pretrained\.act_postprocess3\.0\.project\.0\.", "neck.reassemble_stage.readout_projects.2.0."),
    (r"^model\.pretrained\.act_postprocess4\.0\.project\.0\.", "neck.reassemble_stage.readout_projects.3.0."),
    (r"^model\.pretrained\.act_postprocess3\.3\.", "neck.reassemble_stage.layers.2.projection."),
    (r"^model\.pretrained\.act_postprocess4\.3\.", "neck.reassemble_stage.layers.3.projection."),
    (r"^model\.pretrained\.act_postprocess4\.4\.", "neck.reassemble_stage.layers.3.resize."),
    (r"^model\.scratch\.layer(\d)_rn\.", lambda m: f"neck.convs.{int(m[1]) - 1}."),
    (r"^model\.scratch\.refinenet(\d)\.", lambda m: f"neck.fusion_stage.layers.{4 - int(m[1])}."),
    (r"\.out_conv\.", ".projection."),
    (r"\.resConfUnit(\d)\.conv(\d)\.", r".residual_layer\1.convolution\2."),
    (r"^model\.scratch\.output_conv\.", "head.head."),
]


def to_transformers(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        if key.startswith("model.pretrained.model.head."):
            continue  # the ImageNet classifier: unused by MiDaS, absent from transformers
        qkv = re.match(r"^model\.pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", key)
        if qkv:
            for name, part in zip(("query", "key", "value"), value.chunk(3), strict=True):
                out[f"dpt.encoder.layer.{qkv[1]}.attention.attention.{name}.{qkv[2]}"] = part
            continue
        for pattern, repl in RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def test_parity_with_transformers_dpt_hybrid():
    hf = _hf_model()
    ours = tiny_midas()
    missing, unexpected = hf.load_state_dict(to_transformers(ours.state_dict()), strict=False)
    assert not unexpected
    assert all(k.startswith("dpt.pooler") or "auxiliary" in k for k in missing), missing
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(pixel_values=x).predicted_depth
        got = ours.model(x)
    assert got.shape == expected.shape == (2, 64, 64)
    assert expected.abs().max() > 1e-3  # a non-trivial output, so the comparison means something
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_position_embeddings_resized_like_transformers():
    hf = _hf_model()
    ours = tiny_midas()
    pretrained = ours.model.pretrained
    for gs_h, gs_w in ((4, 4), (6, 4), (4, 10)):
        expected = hf.dpt.embeddings._resize_pos_embed(pretrained.model.pos_embed, gs_h, gs_w)
        torch.testing.assert_close(pretrained._pos_embed(gs_h, gs_w), expected)
