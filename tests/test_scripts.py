"""Scripts through the engine: AlwaysVisible hooks, a dropdown script calling process_images, named
and positional values, isolation of raising hooks, the built-in prompt scripts, and the API."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import processing, startup
from modules.plugins.manager import load_extensions
from modules.plugins.runner import ScriptError
from modules.processing import objects as pt
from tests.api_support import b64_image, make_context, make_data_dir
from tests.extensions_support import BROKEN, PROMPT_SUFFIX, REPEAT_SEEDS, write_extension

RAISING_RUN = {"scripts/bad_run.py": '''
    from modules import scripts

    class BadRun(scripts.Script):
        def title(self):
            return "Bad run"

        def run(self, p):
            raise RuntimeError("run exploded")
'''}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("scripts"))
    for name, files in (("suffix", PROMPT_SUFFIX), ("repeat", REPEAT_SEEDS), ("broken", BROKEN),
                        ("badrun", RAISING_RUN)):
        write_extension(root, name, files)
    ctx = make_context(root)
    ctx.opts.set("samples_save", False)
    load_extensions(ctx, run_installers=False)
    from webui.ui import scripts_ui
    scripts_ui.attach(ctx)
    return ctx


def _p(ctx, **kw):
    p = pt.StableDiffusionProcessingTxt2Img(**{"prompt": "a cat", "width": 64, "height": 64, "seed": 3, "steps": 2,
                                               **kw})
    p.sd_model = startup.current_model(ctx).model
    p.env = pt.ProcessingEnv.from_context(ctx)
    return p


def _script(runner, title):
    return next(s for s in runner.scripts if s.title() == title)


def test_layout_and_defaults(ctx):
    runner = ctx.services.scripts.runner(False)
    suffix, repeat = _script(runner, "Prompt suffix"), _script(runner, "Repeat with seeds")
    assert suffix.alwayson and not repeat.alwayson
    args = runner.default_script_args()
    assert args[0] == 0
    assert args[suffix.args_from:suffix.args_to] == [False, ", masterpiece"]
    assert args[repeat.args_from:repeat.args_to] == [2]
    assert repeat.api_info["args"][0]["label"] == "Repeat count" and repeat.api_info["args"][0]["maximum"] == 4


def test_alwayson_process_edits_the_prompt_and_a_raising_script_does_not_stop_the_job(ctx):
    runner = ctx.services.scripts.runner(False)
    suffix = _script(runner, "Prompt suffix")
    args = runner.default_script_args()
    args[suffix.args_from] = True
    p = _p(ctx)
    assert runner.run_from_ui(p, args) is None  # no dropdown script: the caller runs process_images
    processed = processing.process_images(p)
    assert processed.all_prompts == ["a cat, masterpiece"]
    assert processed.infotexts[0].startswith("a cat, masterpiece\n") and "Prompt suffix: masterpiece" in processed.infotexts[0]
    problems = {p.where for p in ctx.extensions.problems_of("broken")}
    assert {"Raising process()", "Raising postprocess_image()", "callback on_cfg_denoiser (bad_callback)"} <= problems
    # reported once, not once per step or job
    again = processing.process_images(_p(ctx, script_args=list(args), scripts=runner))
    assert len(again.images) == 1
    wheres = [p.where for p in ctx.extensions.problems_of("broken")]
    assert len(wheres) == len(set(wheres))


def test_dropdown_script_runs_process_images_with_named_values(ctx):
    runner = ctx.services.scripts.runner(False)
    repeat = _script(runner, "Repeat with seeds")
    args = runner.default_script_args()
    args[0] = runner.selectable_scripts.index(repeat) + 1
    args[repeat.args_from] = 3
    processed = runner.run(_p(ctx, seed=5), *args)
    assert processed.all_seeds == [5, 105, 205] and len(processed.images) == 3
    alone = processing.process_images(_p(ctx, seed=105))
    np.testing.assert_array_equal(np.asarray(processed.images[1]), np.asarray(alone.images[0]))
    # by title too (A1111's UI passes the index; some callers pass the name)
    values = ["Repeat with seeds"] + args[1:]
    assert len(runner.run_from_ui(_p(ctx), values).images) == 3


def test_a_raising_run_is_a_clear_error(ctx):
    runner = ctx.services.scripts.runner(False)
    args = runner.default_script_args()
    args[0] = runner.titles().index("Bad run") + 1
    with pytest.raises(ScriptError, match="script 'Bad run' \\(extension badrun\\) failed: RuntimeError: run exploded"):
        runner.run(_p(ctx), *args)


def test_prompt_matrix_and_prompts_from_textbox(ctx):
    runner = ctx.services.scripts.runner(False)
    matrix = _script(runner, "Prompt matrix")
    args = runner.default_script_args()
    args[0] = runner.titles().index("Prompt matrix") + 1
    processed = runner.run(_p(ctx, prompt="a cat | red | big"), *args)
    assert processed.all_prompts == ["a cat", "a cat, red", "a cat, big", "a cat, red, big"]
    assert len(processed.images) == 5 and processed.images[0].width == 2 * 64
    assert matrix.args_to - matrix.args_from == 2
    pff = _script(runner, "Prompts from file or textbox")
    args = runner.default_script_args()
    args[0] = runner.titles().index("Prompts from file or textbox") + 1
    args[pff.args_from + 2] = 'a dog\n--prompt "a bird" --steps 3 --seed 9 --width 48\n'
    processed = runner.run(_p(ctx), *args)
    assert processed.all_prompts == ["a dog", "a bird"]
    assert "Steps: 3" in processed.infotexts[1] and "Seed: 9" in processed.infotexts[1]
    assert processed.images[1].size == (48, 64)
    args[pff.args_from + 2] = "--bogus 1"
    with pytest.raises(ValueError, match="unknown option '--bogus'"):
        runner.run(_p(ctx), *args)


def test_api_script_name_script_args_and_alwayson_scripts(ctx):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import routes
    app = FastAPI()
    routes.install(app, ctx)
    client = TestClient(app)
    scripts = client.get("/sdapi/v1/scripts").json()
    assert "repeat with seeds" in scripts["txt2img"] and "x/y/z plot" in scripts["txt2img"]
    info = client.get("/sdapi/v1/script-info").json()
    suffix_info = next(i for i in info if i["name"] == "prompt suffix" and not i["is_img2img"])
    assert suffix_info["is_alwayson"] and [a["label"] for a in suffix_info["args"]] == ["Suffix enabled", "Suffix text"]
    body = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 5,
            "script_name": "Repeat with seeds", "script_args": [2],
            "alwayson_scripts": {"Prompt suffix": {"args": [True, ", oil painting"]}}}
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["images"]) == 2
    image = b64_image(data["images"][0])
    assert isinstance(image, Image.Image)
    import json
    infotexts = json.loads(data["info"])["infotexts"]
    assert infotexts[0].startswith("a cat, oil painting") and "Seed: 105" in infotexts[1]
    r = client.post("/sdapi/v1/txt2img", json={**body, "script_name": "no such script"})
    assert r.status_code == 422
    exts = {e["name"]: e for e in client.get("/sdapi/v1/extensions").json()}
    assert exts["suffix"]["enabled"] and "xyz-grid" in exts
