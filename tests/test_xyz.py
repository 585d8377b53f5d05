"""Built-in X/Y/Z plot on the tiny model: the grid's layout, its cells and their infotexts."""
from __future__ import annotations

import numpy as np
import pytest

from modules import processing, startup
from modules.plugins.manager import load_extensions
from modules.processing import objects as pt
from tests.api_support import make_context, make_data_dir


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("xyz"))
    ctx = make_context(root)
    ctx.opts.set("samples_save", False)
    load_extensions(ctx)
    from webui.ui import scripts_ui
    scripts_ui.attach(ctx)
    return ctx


def _p(ctx, **kw):
    p = pt.StableDiffusionProcessingTxt2Img(prompt="a red circle", width=64, height=64, seed=1, steps=2, **kw)
    p.sd_model = startup.current_model(ctx).model
    p.env = pt.ProcessingEnv.from_context(ctx)
    return p


def _xyz_args(runner, **named):
    script = next(s for s in runner.selectable_scripts if s.title() == "X/Y/Z plot")
    args = runner.default_script_args()
    args[0] = runner.selectable_scripts.index(script) + 1
    names = ["x_type", "x_values", "y_type", "y_values", "z_type", "z_values", "draw_legend",
             "include_lone_images", "no_fixed_seeds"]
    for key, value in named.items():
        args[script.args_from + names.index(key)] = value
    return args


def test_xyz_plot_2x3_grid_matches_separate_runs(env):
    ctx = env
    runner = ctx.services.scripts.runner(False)
    args = _xyz_args(runner, x_type="Seed", x_values="11, 12", y_type="Steps", y_values="1-3",
                     include_lone_images=True)
    processed = runner.run(_p(ctx), *args)
    grid, cells = processed.images[0], processed.images[1:]
    assert len(cells) == 6 and processed.index_of_first_image == 1
    # labels take a margin on the left and on top; the cells fill the rest: 2 columns x 3 rows
    left, top = grid.width - 2 * 64, grid.height - 3 * 64
    assert left > 0 and top > 0
    for i, (steps, seed) in enumerate((s, x) for s in (1, 2, 3) for x in (11, 12)):
        text = processed.infotexts[1 + i]
        assert f"Seed: {seed}," in text and f"Steps: {steps}," in text
        alone = processing.process_images(_with(ctx, seed=seed, steps=steps)).images[0]
        np.testing.assert_array_equal(np.asarray(cells[i]), np.asarray(alone))
        row, col = divmod(i, 2)
        box = (left + col * 64, top + row * 64, left + (col + 1) * 64, top + (row + 1) * 64)
        np.testing.assert_array_equal(np.asarray(grid.crop(box)), np.asarray(alone))
    # the label margins are drawn (not blank white)
    assert np.asarray(grid.crop((0, top, left, grid.height))).min() < 128
    assert np.asarray(grid.crop((left, 0, grid.width, top))).min() < 128


def _with(ctx, **kw):
    p = _p(ctx)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_xyz_axes_sampler_size_prompt_sr_and_errors(env):
    ctx = env
    runner = ctx.services.scripts.runner(False)
    args = _xyz_args(runner, x_type="Prompt S/R", x_values="red, blue", y_type="Size", y_values="64x48, 48x64",
                     z_type="Sampler", z_values="Euler, DPM++ 2M", include_lone_images=True)
    processed = runner.run(_p(ctx), *args)
    grids = processed.images[:processed.index_of_first_image]
    assert len(grids) == 2  # one per Z value
    texts = processed.infotexts[processed.index_of_first_image:]
    assert len(texts) == 8
    assert texts[1].startswith("a blue circle") and "Size: 64x48" in texts[1] and "Sampler: Euler," in texts[1]
    assert "Sampler: DPM++ 2M" in texts[-1] and "Size: 48x64" in texts[-1]
    bad = _xyz_args(runner, x_type="Steps", x_values="3, x")
    with pytest.raises(ValueError, match="'x' is not a number"):
        runner.run(_p(ctx), *bad)


def test_xyz_checkpoint_and_clip_skip_axes_restore_the_model(env):
    ctx = env
    runner = ctx.services.scripts.runner(False)
    before = startup.current_model(ctx).info.title
    args = _xyz_args(runner, x_type="Checkpoint name", x_values="tiny-a, tiny-b", y_type="Clip skip", y_values="1, 2",
                     include_lone_images=True)
    processed = runner.run(_p(ctx), *args)
    texts = processed.infotexts[1:]
    assert "Model: tiny-a" in texts[0] and "Model: tiny-b" in texts[1]
    assert "Clip skip: 2" in texts[2] and "Clip skip" not in texts[0]
    a, b = (np.asarray(im) for im in processed.images[1:3])
    assert not np.array_equal(a, b)  # different weights, different pictures
    assert ctx.models.current.info.title == before


def test_xyz_number_ranges():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "extensions-builtin" / "xyz-grid"))
    try:
        import xyz_axes
    finally:
        sys.path.pop(0)
    assert xyz_axes.parse_numbers("1-5", int) == [1, 2, 3, 4, 5]
    assert xyz_axes.parse_numbers("1-10 (+3)", int) == [1, 4, 7, 10]
    assert xyz_axes.parse_numbers("0-1 [3]", float) == [0.0, 0.5, 1.0]
    assert xyz_axes.parse_numbers("7, 3.5", float) == [7.0, 3.5]
    assert xyz_axes.parse_numbers("10-1 (-3)", int) == [10, 7, 4, 1]


def test_xyz_new_samplers_and_speed_setting_axes(env):
    ctx = env
    runner = ctx.services.scripts.runner(False)
    args = _xyz_args(runner, x_type="Sampler", x_values="UniPC, DDIM CFG++",
                     y_type="Token merging ratio", y_values="0, 0.5", z_type="UniPC Order", z_values="1, 2",
                     include_lone_images=True)
    processed = runner.run(_with(ctx, negative_prompt="blurry", steps=4), *args)
    texts = processed.infotexts[processed.index_of_first_image:]
    assert len(texts) == 8 and "Sampler: DDIM CFG++" in texts[1]
    assert "Token merging ratio" not in texts[0] and "Token merging ratio: 0.5" in texts[2]
    unipc = [np.asarray(im) for im, t in zip(processed.images[processed.index_of_first_image:], texts, strict=True)
             if "Sampler: UniPC" in t and "Token merging" not in t]
    assert len(unipc) == 2 and not np.array_equal(unipc[0], unipc[1])  # the order setting reached UniPC
    ngms = _xyz_args(runner, x_type="Negative Guidance minimum sigma", x_values="0, 20", include_lone_images=True)
    texts = runner.run(_with(ctx, negative_prompt="blurry", steps=3), *ngms).infotexts[1:]
    assert "NGMS" not in texts[0] and "NGMS: 20.0" in texts[1]
