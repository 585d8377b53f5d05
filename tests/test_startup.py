"""Start-up wiring: which checkpoint is the default, the shipped demo model, token counting."""
from pathlib import Path

from modules import cmd_args, context, startup
from tests.api_support import write_tiny_checkpoint


def make(tmp_path, *flags):
    ctx = context.create_context(cmd_args.parse_args(["--data-dir", str(tmp_path), *flags]))
    startup.attach_engine(ctx, preload=False, load_extensions=False)
    return ctx


def test_the_demo_model_is_the_default_when_there_is_nothing_else(tmp_path):
    ctx = make(tmp_path)
    info = startup.default_checkpoint(ctx)
    assert startup.is_demo(info)
    assert startup.native_size(ctx) == 32  # the UI's default width/height follow the model


def test_the_inpainting_demo_is_listed_and_marked_demo_but_not_the_default(tmp_path):
    ctx = make(tmp_path)
    infos = {c.model_name: c for c in ctx.models.catalog.list()}
    inpainting = next(c for name, c in infos.items() if "inpainting" in name)
    assert startup.is_demo(inpainting)
    assert Path(startup.default_checkpoint(ctx).filename).resolve() == startup.DEMO_FILE
    ctx.opts.set("sd_model_checkpoint", inpainting.title)
    assert startup.default_checkpoint(ctx) is inpainting


def test_a_real_checkpoint_wins_over_the_demo_and_the_setting_wins_over_both(tmp_path):
    ckpts = tmp_path / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "mine", "tiny-v1")
    ctx = make(tmp_path)
    assert startup.default_checkpoint(ctx).model_name == "mine"
    assert startup.native_size(ctx) == 64  # tiny-v1: image_size 8 x VAE factor 8
    demo_title = next(t for t in ctx.models.catalog.titles() if t.startswith("demo"))
    ctx.opts.set("sd_model_checkpoint", demo_title)
    assert startup.is_demo(startup.default_checkpoint(ctx))


def test_no_checkpoint_at_all_says_where_to_put_one(tmp_path, monkeypatch):
    ctx = make(tmp_path)
    monkeypatch.setattr(ctx.models.catalog, "list", lambda: [])
    try:
        startup.current_model(ctx)
    except startup.NoCheckpoint as e:
        assert str(tmp_path / "models" / "Stable-diffusion") in str(e)
    else:
        raise AssertionError("expected NoCheckpoint")


def test_token_counter_works_before_and_after_the_model_loads(tmp_path):
    ctx = make(tmp_path)
    assert startup.count_tokens(ctx, "a (red:1.2) circle") == (3, 75)
    startup.current_model(ctx)
    assert startup.count_tokens(ctx, "a (red:1.2) circle") == (3, 75)
    assert startup.count_tokens(ctx, "word " * 80) == (80, 150)


def test_bf16_flag_reaches_the_loaded_model(tmp_path):
    import torch
    ctx = make(tmp_path, "--bf16")
    loaded = startup.current_model(ctx)
    assert loaded.model.dtype == torch.bfloat16  # UNet (and text encoder)
    assert loaded.model.first_stage_model.post_quant_conv.weight.dtype == torch.float32  # VAE stays fp32 on the CPU
    assert make(tmp_path / "plain").models.dtype_unet == torch.float32
