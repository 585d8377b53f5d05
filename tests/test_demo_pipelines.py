"""The shipped demo model through img2img, inpaint, the HTTP API and once through the browser:
checks of what the images show (colours, layout), not only that images come out."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from modules.jobs import Job
from modules.models.loader import load_checkpoint
from modules.options import Options
from modules.processing import (
    ProcessingEnv,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
    process_images,
)
from modules.training import image_metrics
from modules.training.export import DEMO_DIR

SIZE = 32
N = 10


@pytest.fixture(scope="module")
def demo():
    return load_checkpoint(DEMO_DIR / "demo.safetensors").model


def env() -> ProcessingEnv:
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False})
    return ProcessingEnv(opts=opts, job=Job("test"))


def txt2img(model, prompt: str, seed: int, n: int = 1) -> list[Image.Image]:
    p = StableDiffusionProcessingTxt2Img(sd_model=model, env=env(), prompt=prompt, seed=seed, batch_size=n,
                                         steps=20, width=SIZE, height=SIZE, sampler_name="DPM++ 2M")
    return process_images(p).images


def img2img(model, init: Image.Image, prompt: str, strength: float, seed: int, mask=None, **kw) -> list:
    p = StableDiffusionProcessingImg2Img(sd_model=model, env=env(), prompt=prompt, seed=seed, batch_size=N,
                                         steps=20, width=SIZE, height=SIZE, sampler_name="DPM++ 2M",
                                         init_images=[init], denoising_strength=strength, image_mask=mask, **kw)
    return [np.asarray(im.convert("RGB")) for im in process_images(p).images]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


def test_img2img_low_denoising_keeps_the_layout_high_denoising_follows_the_prompt(demo):
    init = txt2img(demo, "a red circle on the left", seed=11)[0]
    source = np.asarray(init.convert("RGB"))
    assert image_metrics.dominant_color(source) == "red"
    kept = img2img(demo, init, "a red circle on the left", 0.3, seed=100)
    correlations = [correlation(source, out) for out in kept]
    print("denoising 0.3 correlation with the input:", [round(c, 3) for c in correlations])
    assert min(correlations) > 0.9
    changed = img2img(demo, init, "a blue circle on the left", 0.9, seed=100)
    blue = sum(image_metrics.dominant_color(out) == "blue" for out in changed)
    print(f"denoising 0.9 with 'blue': blue in {blue}/{N}")
    assert blue >= 8


@pytest.fixture(scope="module")
def demo_inpainting():
    result = load_checkpoint(DEMO_DIR / "demo-inpainting.safetensors")
    assert result.model.model.diffusion_model.config.in_channels == 9  # mask + masked-image latent
    return result.model


@pytest.mark.parametrize("model_name, fill", [
    ("demo", 1),  # the ordinary model, masked area starting from the original pixels
    ("demo_inpainting", 2),  # the 9-channel variant sees the mask and the rest: it starts from latent noise
])
def test_inpaint_paints_the_masked_side_and_keeps_the_rest(request, demo, model_name, fill):
    init = txt2img(demo, "a red circle on the left", seed=12)[0]
    source = np.asarray(init.convert("RGB"))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (SIZE // 2, 0, SIZE, SIZE))  # the right half
    outs = img2img(request.getfixturevalue(model_name), init, "a green square on the right", 1.0, seed=200,
                   mask=mask, mask_blur=0, inpainting_fill=fill, inpaint_full_res=False)
    right = slice(SIZE // 2 + 1, SIZE)
    greens = [image_metrics.color_share(out[:, right], "green") for out in outs]
    print(f"{model_name}: green share in the masked half:", [round(g, 3) for g in greens])
    assert sum(g > 0.05 for g in greens) >= 8
    for out in outs:  # outside the mask: the original pixels, exactly
        assert np.array_equal(out[:, : SIZE // 2 - 1], source[:, : SIZE // 2 - 1])


def test_the_inpainting_variant_still_does_txt2img(demo_inpainting):
    """A quarter of its training masks covered everything: with no image it draws the prompt."""
    images = [np.asarray(im.convert("RGB")) for im in txt2img(demo_inpainting, "a blue circle", seed=400, n=N)]
    blue = sum(image_metrics.dominant_color(im) == "blue" for im in images)
    print(f"inpainting model txt2img 'a blue circle': blue in {blue}/{N}")
    assert blue >= 8


def test_the_api_draws_the_prompted_colour(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tests.api_support import b64_image, make_context
    from webui.api import routes

    ckpts = tmp_path / "models" / "Stable-diffusion"
    ckpts.mkdir(parents=True)
    for name in ("demo.safetensors", "demo.yaml"):
        shutil.copy(DEMO_DIR / name, ckpts / name)
    ctx = make_context(tmp_path)
    app = FastAPI()
    routes.install(app, ctx)
    client = TestClient(app)
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a blue square", "seed": 300, "batch_size": N,
                                               "steps": 20, "width": SIZE, "height": SIZE,
                                               "sampler_name": "DPM++ 2M"})
    assert r.status_code == 200, r.text
    images = [np.asarray(b64_image(b).convert("RGB")) for b in r.json()["images"]]
    images = [im for im in images if im.shape == (SIZE, SIZE, 3)]  # the grid, if any, is wider
    blue = sum(image_metrics.dominant_color(im) == "blue" for im in images)
    print(f"API 'a blue square': blue in {blue}/{len(images)}")
    assert len(images) == N and blue >= 8


@pytest.mark.browser
@pytest.mark.slow
def test_the_browser_draws_a_red_circle_with_the_default_settings(tmp_path):
    """A user's first minutes: open the page, type a prompt, Generate (the defaults follow the demo)."""
    from tests.browser_support import ARGS, CHROMIUM, browser_or_skip
    from tests.live_server import LiveServer

    sync_playwright = browser_or_skip()
    from modules import cmd_args, context, startup
    ctx = context.create_context(cmd_args.parse_args(["--data-dir", str(tmp_path)]))
    startup.attach_engine(ctx, preload=False, load_extensions=False)
    with LiveServer(ctx) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.fill("#txt2img_prompt textarea", "a red circle")
        page.click("#txt2img_generate")
        page.wait_for_function("() => document.querySelector('#txt2img_generation_info textarea').value")
        infotext = page.locator("#txt2img_generation_info textarea").input_value()
        src = page.locator("#txt2img_gallery img").first.get_attribute("src")
        data = page.request.get(src if src.startswith("http") else url + src).body()
        browser.close()
    assert "Size: 32x32" in infotext and "Model: demo" in infotext
    import io
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert image_metrics.dominant_color(image) == "red"
