"""Checkpoint Merger engine: A1111's three methods on real (tiny) checkpoints, fp16, VAE bake-in,
metadata, formats, family checks, and the result loading and generating."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from modules import generation, merger
from modules.models import merge
from modules.models.state_dict import read_state_dict
from tests.api_support import make_context, write_tiny_checkpoint

KEY = "model.diffusion_model.out.2.weight"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge-data")
    ckpts = root / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "a", "tiny-v1", seed=1)
    write_tiny_checkpoint(ckpts, "b", "tiny-v1", seed=2)
    write_tiny_checkpoint(ckpts, "c", "tiny-v1", seed=3)
    write_tiny_checkpoint(ckpts, "inpaint", "tiny-v1-inpainting", seed=4)
    write_tiny_checkpoint(ckpts, "v2", "tiny-v2", seed=5)
    vae = {k.removeprefix("first_stage_model."): torch.full_like(v, 0.5) for k, v in
           read_state_dict(ckpts / "c.safetensors").items() if k.startswith("first_stage_model.")}
    from safetensors.torch import save_file
    (root / "models" / "VAE").mkdir(parents=True, exist_ok=True)
    save_file(vae, root / "models" / "VAE" / "half.vae.safetensors")
    ctx = make_context(root)
    ctx.models.vae_catalog.refresh()
    return ctx


def sd(ctx, name):
    return read_state_dict(ctx.models.catalog.get(name).filename)


def test_weighted_sum_writes_a_listed_file_that_loads_and_generates(ctx):
    path = merger.merge_titles(ctx, primary="a", secondary="b", method="Weighted sum", multiplier=0.25)
    assert path.name == "a_0.75-b_0.25-merged.safetensors" and path.with_suffix(".yaml").is_file()
    info = ctx.models.catalog.get(path.stem)
    assert info is not None and info.title in ctx.models.catalog.titles()  # listed at once
    out, a, b = read_state_dict(path), sd(ctx, "a"), sd(ctx, "b")
    assert out.keys() == a.keys()
    assert torch.allclose(out[KEY], a[KEY] * 0.75 + b[KEY] * 0.25, atol=1e-6)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    recipe = json.loads(meta["sd_merge_recipe"])
    assert recipe["interp_method"] == "Weighted sum" and recipe["multiplier"] == 0.25
    assert recipe["primary_model_hash"] == ctx.models.catalog.get("a").sha256
    assert set(json.loads(meta["sd_merge_models"])) == {ctx.models.catalog.get(n).sha256 for n in ("a", "b")}
    result = generation.run(ctx, generation.GenerationRequest("txt2img", {
        "prompt": "x", "steps": 2, "width": 64, "height": 64, "seed": 3, "do_not_save_samples": True},
        override_settings={"sd_model_checkpoint": info.title}))
    assert result.images and result.images[0].size == (64, 64)
    assert f"Model: {info.model_name}" in result.infotext


def test_add_difference_and_fp16_ckpt(ctx):
    path = merger.merge_titles(ctx, primary="a", secondary="b", tertiary="c", method="Add difference",
                               multiplier=0.5, save_as_half=True, checkpoint_format="ckpt", custom_name="diff")
    assert path.name == "diff.ckpt"
    out, a, b, c = read_state_dict(path), sd(ctx, "a"), sd(ctx, "b"), sd(ctx, "c")
    assert out[KEY].dtype == torch.float16
    assert torch.allclose(out[KEY].float(), (a[KEY] + (b[KEY] - c[KEY]) * 0.5).half().float())
    with pytest.raises(ValueError, match="already exists"):
        merger.merge_titles(ctx, primary="a", secondary="b", tertiary="c", method="Add difference",
                            checkpoint_format="ckpt", custom_name="diff")


def test_no_interpolation_bakes_in_a_vae(ctx):
    path = merger.merge_titles(ctx, primary="a", method="No interpolation", bake_in_vae="half.vae.safetensors",
                               custom_name="a-baked")
    out, a = read_state_dict(path), sd(ctx, "a")
    vae_keys = [k for k in out if k.startswith("first_stage_model.")]
    assert vae_keys and all(torch.all(out[k] == 0.5) for k in vae_keys)
    assert torch.equal(out[KEY], a[KEY])


def test_an_inpainting_a_takes_the_difference_on_its_latent_channels_only(ctx):
    path = merger.merge_titles(ctx, primary="inpaint", secondary="b", tertiary="c", method="Add difference",
                               multiplier=1.0, custom_name="inpaint-b")
    key = merge.UNET_IN
    out, a, b, c = read_state_dict(path), sd(ctx, "inpaint"), sd(ctx, "b"), sd(ctx, "c")
    assert out[key].shape == a[key].shape and out[key].shape[1] == 9
    assert torch.allclose(out[key][:, :4], a[key][:, :4] + b[key] - c[key], atol=1e-6)
    assert torch.equal(out[key][:, 4:], a[key][:, 4:])


@pytest.mark.parametrize("fields, message", [
    ({"primary": "a", "secondary": "v2"}, "A is v1, B is v2"),
    ({"primary": "inpaint", "secondary": "b"}, "only as A, with 'Add difference'"),
    ({"primary": "a", "secondary": "b", "method": "Add difference"}, "needs a tertiary model"),
    ({"primary": "a", "secondary": "nope"}, "secondary model 'nope' not found"),
    ({"primary": "a", "secondary": "b", "multiplier": 1.5}, "between 0 and 1"),
    ({"primary": "a", "secondary": "b", "custom_name": "../x"}, "plain file name"),
    ({"primary": "a", "secondary": "b", "discard_weights": "("}, "regular expression"),
])
def test_bad_merges_are_refused_with_a_message(ctx, fields, message):
    before = set(ctx.models.catalog.titles())
    with pytest.raises(ValueError, match=message):
        merger.merge_titles(ctx, **fields)
    assert set(ctx.models.catalog.titles()) == before


def test_discard_weights_and_unknown_families_merge_by_shapes(tmp_path):
    a = {"w": torch.ones(2, 2), "skip.me": torch.ones(1)}
    b = {"w": torch.zeros(2, 2), "skip.me": torch.zeros(1)}
    from safetensors.torch import save_file
    save_file(a, tmp_path / "a.safetensors")
    save_file(b, tmp_path / "b.safetensors")
    request = merge.MergeRequest(merge.Source(tmp_path / "a.safetensors"), merge.Source(tmp_path / "b.safetensors"),
                                 multiplier=0.5, discard_weights=r"^skip\.")
    out = merge.merged_state_dict(request)
    assert list(out) == ["w"] and torch.all(out["w"] == 0.5)
    save_file({"w": torch.zeros(3, 2)}, tmp_path / "c.safetensors")
    request.secondary = merge.Source(tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match=r"w is \(2, 2\) in A but \(3, 2\) in B"):
        merge.merged_state_dict(request)
