"""Models kept beside the main one: depth2img and 'SD x4' find their checkpoint in the catalog, a
user's before a demo folder's, and say what to do when there is none."""
from __future__ import annotations

from pathlib import Path

import pytest

from modules import cmd_args, context, startup
from modules.depth_service import is_depth_checkpoint
from modules.ldm.latent_diffusion import LatentDepth2ImageDiffusion
from modules.x4_service import is_x4_checkpoint
from tests.api_support import make_context, write_tiny_checkpoint


def shipped_context(tmp_path):
    """The app as a user starts it: the data dir's checkpoints and the shipped demos."""
    ctx = context.create_context(cmd_args.parse_args(["--data-dir", str(tmp_path)]))
    startup.attach_engine(ctx, preload=False, load_extensions=False)
    return ctx


def test_depth_and_x4_checkpoints_are_told_apart_without_loading(tmp_path):
    ckpts = tmp_path / "ckpts"
    depth = write_tiny_checkpoint(ckpts, "d", "tiny-v2-depth")
    x4 = write_tiny_checkpoint(ckpts, "u", "tiny-x4")
    plain = write_tiny_checkpoint(ckpts, "p", "tiny-v1")
    assert [is_depth_checkpoint(p) for p in (depth, x4, plain)] == [True, False, False]
    assert [is_x4_checkpoint(p) for p in (depth, x4, plain)] == [False, True, False]
    depth.with_suffix(".yaml").unlink()  # no yaml: the MiDaS keys in the header decide (none in the tiny one)
    assert not is_depth_checkpoint(depth)


def test_no_depth_checkpoint_says_what_to_do(tmp_path):
    write_tiny_checkpoint(tmp_path / "models" / "Stable-diffusion", "plain", "tiny-v1")
    ctx = make_context(tmp_path)
    with pytest.raises(ValueError, match="depth checkpoint .* models/Stable-diffusion"):
        ctx.services.depth.model()


def test_a_depth_checkpoint_of_the_catalog_is_loaded_beside_the_main_model(tmp_path):
    ckpts = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "plain", "tiny-v1")
    write_tiny_checkpoint(ckpts, "my-depth", "tiny-v2-depth")
    ctx = make_context(tmp_path)
    assert ctx.services.depth.checkpoint() == ckpts / "my-depth.safetensors"
    model = ctx.services.depth.model()  # loaded beside the (not yet loaded) main model
    assert isinstance(model, LatentDepth2ImageDiffusion) and ctx.models.current is None


def test_a_users_checkpoints_win_over_the_shipped_demos(tmp_path):
    ckpts = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "my-depth", "tiny-v2-depth")
    write_tiny_checkpoint(ckpts, "my-x4", "tiny-x4")
    ctx = shipped_context(tmp_path)
    assert ctx.services.depth.checkpoint() == ckpts / "my-depth.safetensors"
    assert ctx.services.upscalers.get("SD x4").service.checkpoint() == ckpts / "my-x4.safetensors"


def test_a_loaded_depth_model_is_used_as_it_is(tmp_path):
    ckpts = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "my-depth", "tiny-v2-depth")
    ctx = make_context(tmp_path)
    loaded = ctx.models.load("my-depth")
    assert ctx.services.depth.model() is loaded.model


def test_the_family_named_in_messages_is_the_loaded_ones(tmp_path):
    """depth2img's 'the loaded checkpoint is ...' named the v1 demo (an f4 VAE, as the x4 upscaler has)
    'SD x4 upscaler'."""
    from modules.models import family
    from modules.models.loader import load_checkpoint

    demo = load_checkpoint(startup.DEMO_FILE).model
    x4 = load_checkpoint(write_tiny_checkpoint(tmp_path, "u", "tiny-x4")).model
    assert family.of_model(demo) is family.FAMILIES["v1-inference"]
    assert family.of_model(x4) is family.FAMILIES["x4-upscaling"]


def test_the_shipped_demos_serve_depth2img_and_sd_x4_but_are_never_the_default(tmp_path):
    ctx = shipped_context(tmp_path)
    depth, x4 = ctx.services.depth.checkpoint(), ctx.services.upscalers.get("SD x4").service.checkpoint()
    assert depth == startup.DEMO_FILE.parents[1] / "demo-depth" / "demo-depth.safetensors"
    assert x4 == startup.DEMO_FILE.parents[1] / "demo-x4" / "demo-x4.safetensors"
    infos = {Path(c.filename): c for c in ctx.models.catalog.list()}
    assert startup.is_demo(infos[depth]) and startup.is_demo(infos[x4])
    assert Path(startup.default_checkpoint(ctx).filename).resolve() == startup.DEMO_FILE
    model = ctx.services.depth.model()  # loaded beside the (not yet loaded) main model
    assert model.depth_model is not None and ctx.models.current is None
