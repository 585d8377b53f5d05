"""A1111's module surface for extensions, through a test extension written the way A1111 authors
write them (tests/extensions_support.py A1111_SURFACE): the names import and answer from the running
application, the callbacks get A1111's data (CFG denoiser params, the image's target path, a changed
path honoured), opts.onchange, settings sections, remove_current_script_callbacks, alwayson_scripts."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

from modules import processing, startup
from modules.plugins.manager import load_extensions
from modules.processing import objects as pt
from tests.api_support import make_context, make_data_dir
from tests.extensions_support import A1111_SURFACE, write_extension


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("surface"))
    write_extension(root, "surface", A1111_SURFACE)
    ctx = make_context(root)
    load_extensions(ctx, run_installers=False)
    startup.current_model(ctx)  # on_model_loaded reads the names
    return ctx


def _seen():
    return next(m for n, m in sys.modules.items() if n.startswith("sdwebui_extension_surface")).seen


def _p(ctx, **kw):
    p = pt.StableDiffusionProcessingTxt2Img(**{"prompt": "a cat", "width": 64, "height": 64, "seed": 3, "steps": 4,
                                               "sampler_name": "Euler", **kw})
    p.sd_model = startup.current_model(ctx).model
    p.env = pt.ProcessingEnv.from_context(ctx)
    return p


def test_names_answer_from_the_running_application(ctx):
    assert ctx.extensions.problems_of("surface") == []
    names = _seen()["names"]
    assert names["tiles"] == ctx.models.catalog.titles() and names["model"] is True and names["attn2"] > 0
    assert names["tokens"] == 3  # "a red circle": the prompt encoder's token count
    assert names["device"] == "cpu" and names["samplers"] and names["upscalers"] == ["None", "Lanczos", "Nearest"]
    assert names["data_path"] == str(ctx.paths.data_dir) and names["models_path"] == str(ctx.paths.models_dir)
    assert "surface" in names["active"] and "xyz_grid.py" in names["scripts_data"]
    assert names["module_name"] == ["surface.py"]  # A1111 names script modules after their file
    assert names["basedir"] == "surface" and names["cmd_api"] is True and names["lora_dir"]
    assert names["paste"] == "5" and names["extra"] == "a  cat" and names["cond"] == 64 and names["fixed"] == 5
    assert names["old_name"] and names["installed"]


def test_cfg_denoiser_params_and_removed_callbacks(ctx):
    seen = _seen()
    seen["cfg"].clear()
    p = _p(ctx, batch_size=2, negative_prompt="ugly")
    p.do_not_save_samples = True
    processing.process_images(p)
    steps = [c[0] for c in seen["cfg"]]
    # A1111's state.sampling_step: 0 at launch, then the step the sampler's callback last reported
    # (after each step): Euler's 4 UNet calls see 0, 0, 1, 2 there too
    assert steps == [0, 0, 1, 2]
    for _, total, x, cond, uncond, sigma in seen["cfg"]:
        assert total == 4 and x[0] == 4 and cond[0] == 2 and uncond[0] == 2 and sigma == (4,)
        assert cond[2] == uncond[2] and x[1:] == (4, 8, 8)
    assert "gone" not in seen  # registered, then removed by remove_current_script_callbacks


def test_image_save_params_filename_is_the_target_and_a_changed_one_is_used(ctx):
    seen = _seen()
    seen["saved"].clear()
    ctx.opts.set("samples_save", True)
    processing.process_images(_p(ctx, prompt="a dog"))
    saved = sorted((ctx.paths.outputs_dir / "txt2img-images").rglob("*.png"))
    assert [str(p) for p in saved] == seen["saved"]  # the path it was going to be written to
    processing.process_images(_p(ctx, prompt="rename me"))
    renamed = list((ctx.paths.outputs_dir / "txt2img-images").rglob("renamed-by-extension.png"))
    assert len(renamed) == 1
    with Image.open(renamed[0]) as im:
        assert im.info["parameters"].startswith("rename me\n")
    with pytest.raises(FileExistsError, match="never overwritten"):  # the same name again
        processing.process_images(_p(ctx, prompt="rename me"))


def test_settings_section_onchange_and_alwayson_scripts_by_title(ctx):
    info = ctx.opts.registry["surface_mode"]
    assert info.section == "surface" and ctx.opts.section_labels["surface"] == "Surface test"
    assert info.choices == ("a", "b")
    ctx.opts.set("surface_word", "changed")
    ctx.opts.set("surface_word", "changed")  # no change: no call
    assert _seen()["changes"] == ["plain", "changed"]  # A1111: onchange(call=True) calls it once at once
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import routes
    from webui.ui import scripts_ui
    scripts_ui.attach(ctx)
    app = FastAPI()
    routes.install(app, ctx)
    r = TestClient(app).post("/sdapi/v1/txt2img", json={
        "prompt": "a cat", "steps": 2, "width": 64, "height": 64,
        "alwayson_scripts": {"Surface": {"args": [True, "apiword"]}}})
    assert r.status_code == 200, r.text
    assert "Surface word: apiword" in json.loads(r.json()["info"])["infotexts"][0]


@pytest.mark.slow
def test_the_engine_never_imports_gradio_and_nothing_imports_the_ui_facades():
    code = textwrap.dedent("""
        import pkgutil, importlib, sys
        import modules
        ui_facades = {"modules.ui_components", "modules.ui_common", "modules.ui"}
        for m in pkgutil.walk_packages(modules.__path__, "modules."):
            if m.name not in ui_facades and not m.name.startswith("modules.training"):
                importlib.import_module(m.name)
        print("gradio" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=str(__import__("modules.paths").paths.ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("False")
    from modules.paths import ROOT
    users = [p for p in (ROOT / "modules").rglob("*.py")
             if any(f"modules.{n}" in p.read_text() or f"import {n}" in p.read_text()
                    for n in ("ui_components", "ui_common")) and p.stem not in ("ui_components", "ui_common", "ui")]
    assert users == []


def test_launch_api_for_install_py(tmp_path):
    script = tmp_path / "install.py"
    script.write_text("import launch\nprint(launch.is_installed('torch'), launch.is_installed('no-such-pkg-xyz'))\n"
                      "print(callable(launch.run_pip), launch.git_tag() != '')\n")
    from modules.paths import ROOT
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["True", "False", "True", "True"], out.stderr[-1000:]
