"""The shipped SD3 demo file: the official single-file SD3 layout at tiny sizes, detected and built
from its shapes like any SD3 checkpoint, listed beside the v1 demo without replacing it as the default."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from modules import cmd_args, context, startup
from modules.models import sd3_detect
from modules.models.loader import load_checkpoint
from modules.training.demo_sd3 import DEFAULT_OUT, FILE_NAME, demo_config

SD3_DEMO = DEFAULT_OUT / FILE_NAME
PREFIXES = ("model.diffusion_model.", "first_stage_model.", "text_encoders.clip_l.transformer.",
            "text_encoders.clip_g.transformer.")


def test_the_file_holds_the_official_single_file_layout_in_fp16():
    with safe_open(str(SD3_DEMO), framework="pt") as f:
        keys, metadata = list(f.keys()), f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in keys}
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
    assert {p for p in PREFIXES if any(k.startswith(p) for k in keys)} == set(PREFIXES)
    assert all(k.startswith(PREFIXES) for k in keys)
    assert dtypes == {"F16"}
    assert SD3_DEMO.stat().st_size < 16e6
    assert metadata["modelspec.resolution"] == "32x32" and metadata["text_encoders"] == "clip_l,clip_g"
    # what the app's detection makes of it: an SD3 file of another size, with both CLIPs and no T5
    assert sd3_detect.is_sd3(shapes) and sd3_detect.variant(shapes, SD3_DEMO.name) == "sd3"
    assert sd3_detect.encoders_in(shapes) == ("clip_l", "clip_g")


def test_it_loads_through_the_apps_loader_as_the_trained_configuration():
    result = load_checkpoint(SD3_DEMO, text_encoder_dirs=[])
    model = result.model
    want = demo_config()
    assert result.config == "sd3" and model.family.title == "SD3 (other sizes)"
    assert model.config.mmdit == want.mmdit and model.config.clip_l == want.clip_l and model.config.clip_g == want.clip_g
    assert model.config.vae.ch_mult == want.vae.ch_mult and model.config.vae.z_channels == 16
    assert not model.config.vae.use_quant_conv and model.vae_scale_factor == 4
    assert model.notes == []  # trained without T5 (its metadata says so): nothing to suggest
    cond = model.get_learned_conditioning(["a red circle"])
    assert cond["crossattn"].shape == (1, 154, 64) and cond["vector"].shape == (1, 64)


def test_the_sd3_demo_is_listed_as_a_demo_but_the_v1_demo_stays_the_default(tmp_path):
    ctx = context.create_context(cmd_args.parse_args(["--data-dir", str(tmp_path)]))
    startup.attach_engine(ctx, preload=False, load_extensions=False)
    infos = {Path(c.filename).resolve(): c for c in ctx.models.catalog.list()}
    sd3 = infos[SD3_DEMO.resolve()]
    assert startup.is_demo(sd3)
    assert Path(startup.default_checkpoint(ctx).filename).resolve() == startup.DEMO_FILE
    ctx.opts.set("sd_model_checkpoint", sd3.title)
    assert startup.default_checkpoint(ctx) is sd3
    assert startup.native_size(ctx) == 32  # from the file's modelspec.resolution (it has no yaml)


def test_bf16_gives_the_velocity_of_fp32():
    """Loaded in bf16 (the CPU default where it is fast) the MMDiT predicts what it does in fp32, up to rounding."""
    fp32 = load_checkpoint(SD3_DEMO, text_encoder_dirs=[]).model
    bf16 = load_checkpoint(SD3_DEMO, dtype=torch.bfloat16, dtype_vae=torch.float32, text_encoder_dirs=[]).model
    cond = fp32.get_learned_conditioning(["a small red circle on a blue background"])
    z, t = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500.0])
    v32 = fp32.apply_model(z, t, cond)
    v16 = bf16.apply_model(z.bfloat16(), t, {k: v.bfloat16() for k, v in cond.items()}).float()
    assert (v32 - v16).abs().mean() < 0.02 * v32.abs().mean()
