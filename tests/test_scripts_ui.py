"""Extensions in the web UI, through gradio_client against a real server: the scripts dropdown and
AlwaysVisible controls of txt2img, an on_ui_tabs tab with its own endpoint, extension js/css in the
page, and the Extensions tab."""
from __future__ import annotations

import pytest

from modules.plugins.manager import load_extensions
from tests.api_support import make_context, make_data_dir
from tests.extensions_support import BROKEN, CALLBACKS, PROMPT_SUFFIX, REPEAT_SEEDS, write_extension
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("ui-ext"))
    for name, files in (("suffix", PROMPT_SUFFIX), ("repeat", REPEAT_SEEDS), ("hooks", CALLBACKS), ("broken", BROKEN)):
        write_extension(root, name, files)
    ctx = make_context(root)
    load_extensions(ctx, run_installers=False)
    with LiveServer(ctx) as url:
        from gradio_client import Client
        yield ctx, url, Client(url, verbose=False)


def _params(client, api_name):
    info = client.view_api(return_format="dict", print_info=False)
    return [p["parameter_name"] for p in info["named_endpoints"][api_name]["parameters"]]


def test_txt2img_with_alwayson_and_dropdown_scripts(server):
    ctx, url, client = server
    runner = ctx.services.scripts.runner(False)
    suffix = next(s for s in runner.scripts if s.title() == "Prompt suffix")
    repeat = next(s for s in runner.scripts if s.title() == "Repeat with seeds")
    names = _params(client, "/txt2img")
    assert f"script_args_{repeat.args_to - 1}" in names, names  # the dropdown, then every control
    common = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 5}
    gallery, infotext, *_ = client.predict(**common, **{f"script_args_{suffix.args_from}": True,
                                                        f"script_args_{suffix.args_from + 1}": ", watercolor"},
                                           api_name="/txt2img")
    assert infotext.startswith("a cat, watercolor\n") and len(gallery) == 1
    gallery, infotext, *_ = client.predict(**common, **{"script_args_0": "Repeat with seeds",
                                                        f"script_args_{repeat.args_from}": 3}, api_name="/txt2img")
    assert len(gallery) == 3 and "Seed: 5," in infotext


def test_extension_tab_page_assets_and_extensions_tab(server):
    ctx, url, client = server
    assert client.predict("quiet", api_name="/hooks_shout") == "QUIET"
    import httpx
    page = httpx.get(url + "/").text
    assert "window.hooksExtensionLoaded = true;" in page
    config = httpx.get(url + "/config").json()
    elem_ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"script_list", "tab_hooks_tab", "hooks_box", "extensions_installed_html"} <= elem_ids
    html = next(c["props"]["value"] for c in config["components"] if c.get("props", {}).get("elem_id") == "extensions_installed_html")
    assert "SyntaxError" in html and "hooks" in html
    assert "#hooks_box" in config.get("css", "") or "#hooks_box" in httpx.get(url + "/").text
