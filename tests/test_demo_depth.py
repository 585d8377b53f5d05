"""The shipped depth2img demo through the app's HTTP API (and once in the browser): it keeps the
picture's layout while the prompt repaints each shape in the colour the prompt gives it, its
estimated depth follows the true depth, and a user's depth map overrides the estimate.

models/Stable-diffusion/demo-depth is trained by `python -m modules.training.demo_scenes` on synthetic
scenes of shapes hanging before a wall and a floor (modules/training/scenes.py), whose depth is known.
The servers here hold a copy of the demo and nothing else, as a new user has.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from modules.training import scene_eval as se
from modules.training import scene_metrics as sm
from modules.training import scenes
from tests.api_support import b64_image, png_b64
from tests.demo_support import demo_api, demo_server, page_image

pytestmark = pytest.mark.slow  # the demo at 64 px: ~40 s for the module on one CPU thread

N = 10
LAYOUT_IOU = 0.7
BROWSER_SEED = 100
SWAPPED_PROMPT = "a yellow circle and a green square"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    return demo_api(tmp_path_factory.mktemp("depth-demo"), ("demo-depth",))


def depth2img(client, picture: np.ndarray, depth_map: np.ndarray | None = None, seed: int = 100, n: int = N,
              prompt: str = se.REPAINT_PROMPT) -> dict:
    body = {"init_images": [png_b64(Image.fromarray(picture))], "prompt": prompt, "seed": seed,
            "batch_size": n, "steps": 20, "cfg_scale": 7, "sampler_name": "DPM++ 2M",
            "denoising_strength": se.REPAINT_STRENGTH}
    if depth_map is not None:
        body["depth_map"] = png_b64(Image.fromarray(depth_map, "L"))
    r = client.post("/sdapi/v1/depth2img", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def pictures(response: dict) -> list[np.ndarray]:
    return [np.asarray(b64_image(b).convert("RGB")) for b in response["images"]]


@pytest.fixture(scope="module")
def repainted(api):
    """The test picture (a red circle on the left, a blue square on the right) through depth2img with
    "a green circle and a yellow square", seeds 100-109."""
    ctx, client = api
    return depth2img(client, scenes.render(se.two_shapes_scene(), 64))


def test_depth2img_keeps_the_layout(repainted):
    """The coloured pixels of >= 8/10 outputs cover the input's outlines and little else (IoU >= 0.7)."""
    overlaps = [se.layout_iou(out, se.two_shapes_scene()) for out in pictures(repainted)]
    print("layout IoU:", [round(o, 2) for o in overlaps])
    assert len(overlaps) == N and sum(o >= LAYOUT_IOU for o in overlaps) >= 8
    info = json.loads(repainted["info"])
    assert info["depth_map"] == "MiDaS" and "Depth map: MiDaS" in info["infotexts"][0]


@pytest.mark.parametrize("prompt, wanted", [(se.REPAINT_PROMPT, ["green", "yellow"]),
                                            (SWAPPED_PROMPT, ["yellow", "green"])])
def test_depth2img_repaints_each_shape_in_the_colour_the_prompt_gives_it(api, repainted, prompt, wanted):
    """Each shape takes the colour the prompt names for it, where it was (centre within 3 px), in
    >= 8/10 seeds - for both word orders, so the colours follow the words, not a habit."""
    ctx, client = api
    scene = se.two_shapes_scene()
    response = repainted if prompt == se.REPAINT_PROMPT else depth2img(client, scenes.render(scene, 64), prompt=prompt)
    reports = [se.repaint_report(out, scene, wanted) for out in pictures(response)]
    print(prompt, "colours:", [r.colors for r in reports], "offsets:", [[round(o, 1) for o in r.offsets] for r in reports])
    assert sum(r.ok(wanted, se.MAX_OFFSET) for r in reports) >= 8


def test_estimated_depth_follows_the_true_depth(api):
    ctx, client = api
    correlations = []
    for scene in [se.two_shapes_scene(), *se.held_out_scenes(4)]:
        response = depth2img(client, scenes.render(scene, 64), n=1)
        estimate = np.asarray(b64_image(response["depth_map"]).convert("L"), dtype=np.float32)
        correlations.append(sm.correlation(estimate, scenes.render_depth(scene, 64)))
    print("correlation with the true depth:", [round(c, 3) for c in correlations])
    assert min(correlations) > 0.8


def test_a_users_depth_map_overrides_the_estimate(api):
    """The picture has a circle on the left and a smaller square on the right; the user's depth map
    has them the other way round: the outputs' shapes follow the map's outlines, not the picture's."""
    ctx, client = api
    picture, mirrored = se.two_shapes_scene(), se.mirrored_scene()
    depth_map = (scenes.render_depth(mirrored, 64) * 255).round().astype(np.uint8)
    response = depth2img(client, scenes.render(picture, 64), depth_map)
    overlaps = [(se.layout_iou(out, mirrored), se.layout_iou(out, picture)) for out in pictures(response)]
    print("layout IoU with the map's outlines, with the picture's:", [(round(a, 2), round(b, 2)) for a, b in overlaps])
    assert sum(a >= LAYOUT_IOU and a > b + 0.1 for a, b in overlaps) >= 8
    assert json.loads(response["info"])["depth_map"] == "user"
    used = np.asarray(b64_image(response["depth_map"]).convert("L"), dtype=np.float32)
    assert sm.correlation(used, depth_map) > 0.99  # the map used is the user's


@pytest.fixture(scope="module")
def demo_page(tmp_path_factory):
    """(ctx, url, page) of a server over the depth demo alone (demo_support.demo_server)."""
    yield from demo_server(tmp_path_factory.mktemp("depth-demo-browser"), ("demo-depth",))


@pytest.mark.browser
def test_the_browser_runs_depth2img_on_the_depth_demo(demo_page, tmp_path):
    """A user's first try of the depth2img tab with no SD 2 checkpoint: the demo answers, the depth map
    it estimated is shown (and follows the true depth), the output keeps the picture's layout and
    paints the circle green and the square yellow, as the prompt says."""
    from tests.browser_support import open_tab, wait_for_gallery

    ctx, url, page = demo_page
    scene = se.two_shapes_scene()
    source = tmp_path / "two-shapes.png"
    Image.fromarray(scenes.render(scene, 64)).save(source)
    open_tab(page, "tab_depth2img")
    page.set_input_files("#depth2img_image input[type=file]", str(source))
    page.wait_for_selector("#depth2img_image img")
    page.fill("#depth2img_prompt textarea", se.REPAINT_PROMPT)
    seed = page.locator("#depth2img_seed input")
    seed.fill(str(BROWSER_SEED))
    seed.press("Enter")
    page.click("#depth2img_generate")
    infotext = wait_for_gallery(page, "depth2img")
    output = page_image(page, url, "#depth2img_gallery img")
    depth = page_image(page, url, "#depth2img_depth_used img").mean(axis=2)
    assert "Depth map: MiDaS" in infotext and f"Seed: {BROWSER_SEED}" in infotext
    assert output.shape == (64, 64, 3) and se.layout_iou(output, scene) >= LAYOUT_IOU
    assert se.repaint_report(output, scene, ["green", "yellow"]).ok(["green", "yellow"], se.MAX_OFFSET)
    assert sm.correlation(depth, scenes.render_depth(scene, 64)) > 0.8
