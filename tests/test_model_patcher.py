"""Clone-and-patch: attention, block-output and weight patches change the UNet's output and come
off exactly (bit-identical weights and outputs); a job's patches come off after the job."""
from __future__ import annotations

import pytest
import torch

from modules.ldm.attention import sdpa_attention
from modules.models.patcher import ModelPatcher, apply_for_job, remove_for_job
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def model():
    return make_tiny_model("tiny-v1", seed=4)


def _unet_out(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    context = torch.randn(1, 77, model.model.diffusion_model.config.context_dim, generator=g)
    with torch.no_grad():
        return model.model.diffusion_model(x, torch.tensor([500]), context)


def test_attention_patch_wraps_and_is_removed(model):
    before = _unet_out(model)
    calls = []

    def doubled_values(q, k, v, heads, attention):
        calls.append(q.shape)
        return attention(q, k, v * 2, heads)

    patcher = ModelPatcher(model).add_attention_patch(doubled_values, "*.attn2")
    with patcher:
        patched = _unet_out(model)
    assert calls and not torch.equal(patched, before)
    n_attn2 = len([n for n in patcher.attention_layers() if n.endswith("attn2")])
    assert len(calls) == n_attn2
    assert torch.equal(_unet_out(model), before)
    assert all(m.attention is sdpa_attention for m in patcher.attention_layers().values())


def test_identity_attention_patch_keeps_the_output(model):
    before = _unet_out(model)
    with ModelPatcher(model).add_attention_patch(lambda q, k, v, heads, attention: attention(q, k, v, heads)):
        assert torch.allclose(_unet_out(model), before)


def test_block_output_and_weight_patches_and_clone(model):
    before = _unet_out(model)
    key = "model.diffusion_model.out.2.bias"
    original = model.state_dict()[key].clone()
    base = ModelPatcher(model).add_weight_patch(key, torch.ones_like(original), strength=0.5)
    clone = base.clone().add_block_output_patch("middle_block", lambda h: h * 0)
    assert len(base.block_patches) == 0 and len(clone.block_patches) == 1
    with base:
        out = _unet_out(model)
        assert torch.allclose(out - before, torch.full_like(out, 0.5), atol=1e-5)  # a bias shift of 0.5
    assert torch.equal(model.state_dict()[key], original)
    with clone:
        changed = _unet_out(model)
    assert not torch.allclose(changed, before + 0.5, atol=1e-3)
    assert torch.equal(_unet_out(model), before) and torch.equal(model.state_dict()[key], original)


def test_bad_names_are_clear_errors(model):
    patcher = ModelPatcher(model)
    with pytest.raises(ValueError, match="no UNet block matches 'nowhere'"):
        patcher.add_block_output_patch("nowhere", lambda h: h)
    with pytest.raises(ValueError, match="has no weight"):
        patcher.add_weight_patch("nope.weight", torch.zeros(1))
    with pytest.raises(ValueError, match="does not match"):
        patcher.add_weight_patch("model.diffusion_model.out.2.bias", torch.zeros(3))
    points = patcher.patch_points()
    assert "middle_block" in points["block_output"] and "input_blocks.1" in points["block_output"]
    assert any(n.endswith("transformer_blocks.0.attn1") for n in points["attention"])


def test_job_patches_come_off_after_the_job(model):
    before = _unet_out(model)

    class P:
        scripts = None

    p = P()
    apply_for_job(p, ModelPatcher(model).add_block_output_patch("out", lambda h: h + 1))
    assert torch.allclose(_unet_out(model), before + 1)
    remove_for_job(p)
    assert torch.equal(_unet_out(model), before)
