"""script_name / script_args / alwayson_scripts reach scripts through the seam documented in
modules/generation/scripts.py: `ctx.services.scripts.runner(is_img2img)` with A1111's ScriptRunner shape.

The runner here is the smallest one with that shape (the extensions system provides the real one);
the scripts are written the way A1111 authors write them, and generation is real.
"""
from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modules import processing
from tests.api_support import make_context, make_data_dir
from webui.api import routes

API = "/sdapi/v1"
SMALL = {"width": 64, "height": 64, "steps": 2, "seed": 5}


class PromptSuffix:
    """AlwaysVisible: appends its argument to every prompt in `process`."""
    alwayson, args_from, args_to = True, 1, 2

    def title(self):
        return "Prompt suffix"

    def process(self, p, suffix=None):
        if suffix:
            p.all_prompts = [prompt + suffix for prompt in p.all_prompts]


class SeedPair:
    """A dropdown script: its run makes the image with the request's seed and with seed + offset."""
    alwayson, args_from, args_to = False, 2, 3

    def title(self):
        return "Seed pair"

    def run(self, p, offset=1):
        first = processing.process_images(p)
        p.seed = first.seed + int(offset)
        second = processing.process_images(p)
        first.images += second.images
        first.infotexts += second.infotexts
        first.all_seeds += second.all_seeds
        return first


class Runner:
    """A1111's ScriptRunner shape: args[0] selects the dropdown script (1-based, 0 = none)."""

    def __init__(self):
        self.scripts = [PromptSuffix(), SeedPair()]
        self.selectable_scripts = [s for s in self.scripts if not s.alwayson]
        self.alwayson_scripts = [s for s in self.scripts if s.alwayson]

    def default_script_args(self):
        return [0, None, 1]

    def process(self, p):
        for script in self.alwayson_scripts:
            script.process(p, *p.script_args[script.args_from:script.args_to])

    def run(self, p, *args):
        if not args[0]:
            return None  # no dropdown script: the caller runs process_images
        script = self.selectable_scripts[args[0] - 1]
        return script.run(p, *args[script.args_from:script.args_to])


class Scripts:
    scripts_txt2img = Runner()
    scripts_img2img = Runner()

    def runner(self, is_img2img):
        return self.scripts_img2img if is_img2img else self.scripts_txt2img


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("scripts-data")))
    ctx.services.scripts = Scripts()
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False)


def test_scripts_are_listed(client):
    assert client.get(f"{API}/scripts").json() == {"txt2img": ["seed pair"], "img2img": ["seed pair"]}
    info = client.get(f"{API}/script-info").json()
    assert {(i["name"], i["is_alwayson"], i["is_img2img"]) for i in info} == {
        ("prompt suffix", True, False), ("seed pair", False, False),
        ("prompt suffix", True, True), ("seed pair", False, True)}


def test_a_selectable_script_runs_with_its_args(client):
    r = client.post(f"{API}/txt2img", json={**SMALL, "prompt": "a", "script_name": "Seed Pair", "script_args": [10]})
    assert r.status_code == 200, r.text
    info = json.loads(r.json()["info"])
    assert len(r.json()["images"]) == 2 and info["all_seeds"] == [5, 15]


def test_an_alwayson_script_gets_its_args(client):
    r = client.post(f"{API}/txt2img", json={**SMALL, "prompt": "a house",
                                            "alwayson_scripts": {"Prompt suffix": {"args": [", at night"]}}})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"])["infotexts"][0].startswith("a house, at night\n")
    plain = client.post(f"{API}/txt2img", json={**SMALL, "prompt": "a house"})
    assert json.loads(plain.json()["info"])["infotexts"][0].startswith("a house\n")


@pytest.mark.parametrize("body", [
    {"script_name": "no such script"},
    {"alwayson_scripts": {"no such script": {"args": []}}},
    {"alwayson_scripts": {"seed pair": {"args": []}}},  # a dropdown script is not always-on
    {"alwayson_scripts": {"prompt suffix": {"args": "not a list"}}},
])
def test_script_errors_are_422(client, body):
    r = client.post(f"{API}/txt2img", json={**SMALL, **body})
    assert r.status_code == 422, r.text


@pytest.mark.slow  # loads every built-in extension and builds their controls
def test_the_builtin_xyz_plot_through_the_api(tmp_path_factory):
    """The real extension system: X/Y/Z plot (built in) as A1111 clients call it, by title with
    its arguments in the order of its controls."""
    from modules.plugins.manager import load_extensions
    from webui.ui import scripts_ui

    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("xyz-api")))
    ctx.opts.set("samples_save", False)
    load_extensions(ctx)
    scripts_ui.attach(ctx)
    app = FastAPI()
    routes.install(app, ctx)
    client = TestClient(app, raise_server_exceptions=False)
    assert "x/y/z plot" in client.get(f"{API}/scripts").json()["txt2img"]
    extensions = client.get(f"{API}/extensions").json()
    assert extensions and all(set(e) >= {"name", "remote", "branch", "commit_hash", "version", "enabled"}
                              for e in extensions)
    info = next(i for i in client.get(f"{API}/script-info").json() if i["name"] == "x/y/z plot")
    assert len(info["args"]) >= 6
    args = ["Seed", "11, 12", "Steps", "1, 2", "Nothing", "", True, True]  # ..., legend, include sub images
    r = client.post(f"{API}/txt2img", json={**SMALL, "prompt": "a", "script_name": "X/Y/Z plot",
                                            "script_args": args})
    assert r.status_code == 200, r.text
    infotexts = json.loads(r.json()["info"])["infotexts"]
    assert any("Seed: 12," in t and "Steps: 2," in t for t in infotexts)
    assert len(r.json()["images"]) == 5  # the grid, then the 2 x 2 cells
