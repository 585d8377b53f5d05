"""The shipped SD3 demo draws what the prompt says, through the app: its loader, txt2img, img2img,
inpaint, the HTTP API and once the browser. Checks of what the pictures show (colour, shape, side,
size, background), as tests/test_demo_model.py does for the v1 demo.

models/Stable-diffusion/demo-sd3/demo-sd3.safetensors is trained by `python -m modules.training.demo_sd3`
(rectified flow, tiny MMDiT + CLIP-L/G + 16-channel VAE, no T5) on modules/training/sd3_shapes.py.
Generation: Euler, 20 steps, CFG 5 (the SD3 family's sampler and guidance), the family's shift 3.
"""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from modules.conditioning import make_conditioner
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
from modules.training.demo_sd3 import DEFAULT_OUT, FILE_NAME
from modules.training.sd3_shapes import BACKGROUNDS

SD3_DEMO = DEFAULT_OUT / FILE_NAME
SEEDS = 10
SIZE = 32  # the demo's native size (8x8x16 latents, 4x4 tokens)
GEN = dict(steps=20, sampler_name="Euler", cfg_scale=5.0, width=SIZE, height=SIZE)


def load_demo(dtype=torch.float32):
    """dtype: the MMDiT's and text encoders' (bf16: the app's default on CPUs with AMX); the VAE stays fp32."""
    return load_checkpoint(SD3_DEMO, dtype=dtype, dtype_vae=torch.float32, text_encoder_dirs=[]).model


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def demo(request):
    """The picture tests run in both precisions the app uses on the CPU."""
    return load_demo(request.param)


@pytest.fixture(scope="module")
def demo32():
    return load_demo()


def env() -> ProcessingEnv:
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False})
    return ProcessingEnv(opts=opts, job=Job("test"), conditioner=make_conditioner())


_cache: dict = {}


def txt2img(model, prompt, negative_prompt="", seed=1000) -> list[np.ndarray]:
    """SEEDS images (seeds seed..seed+9) as uint8 arrays, generated the way the app does (cached)."""
    key = (id(model), prompt, negative_prompt, seed)
    if key not in _cache:
        p = StableDiffusionProcessingTxt2Img(sd_model=model, env=env(), prompt=prompt, negative_prompt=negative_prompt,
                                             seed=seed, batch_size=SEEDS, **GEN)
        _cache[key] = [np.asarray(im.convert("RGB")) for im in process_images(p).images]
    return _cache[key]


def hits(images, measure, expected) -> int:
    return sum(measure(img) == expected for img in images)


def background(image):
    return image_metrics.background(image, BACKGROUNDS)


@pytest.mark.parametrize("prompt,color", [("a red circle", "red"), ("a blue square", "blue"),
                                          ("a green triangle", "green")])
def test_prompted_colour_wins(demo, prompt, color):
    images = txt2img(demo, prompt)
    assert images[0].shape == (SIZE, SIZE, 3)
    color_hits = hits(images, image_metrics.dominant_color, color)
    print(f"{prompt!r}: colour {color_hits}/{SEEDS}")
    assert color_hits >= 8, [image_metrics.dominant_color(i) for i in images]


SHAPE_PROMPTS = {"a red circle": "circle", "a blue square": "square", "a green triangle": "triangle"}


def shape_hits(model) -> dict[str, int]:
    per_prompt = {p: hits(txt2img(model, p), image_metrics.shape, shape) for p, shape in SHAPE_PROMPTS.items()}
    print(f"shape right: {per_prompt}")
    return per_prompt


def test_prompted_shape_mostly_wins(demo):
    """Chance is 10/30; half the shapes are small (8-11 px), the prompts name no size."""
    assert sum(shape_hits(demo).values()) >= 24


@pytest.mark.parametrize("prompt,side", [
    ("a yellow circle on the left", "left"),
    ("a purple square on the right", "right"),
    ("a red triangle on the right", "right"),
    ("a blue circle on the left", "left"),
])
def test_prompted_side_wins(demo, prompt, side):
    images = txt2img(demo, prompt)
    side_hits = hits(images, image_metrics.side, side)
    print(f"{prompt!r}: side {side_hits}/{SEEDS}")
    assert side_hits >= 7, [image_metrics.side(i) for i in images]


@pytest.mark.parametrize("prompt,size", [
    ("a small red circle", "small"),
    ("a large blue square", "large"),
    ("a small green triangle on the left", "small"),
    ("a large yellow circle on the right", "large"),
])
def test_prompted_size_wins(demo, prompt, size):
    """What the v1 demo could not do: "small" and "large" (widths 26-34% and 42-56% of the image)."""
    images = txt2img(demo, prompt)
    size_hits = hits(images, image_metrics.size, size)
    print(f"{prompt!r}: size {size_hits}/{SEEDS}")
    assert size_hits >= 7, [image_metrics.size(i) for i in images]


@pytest.mark.parametrize("prompt,color,bg", [
    ("a red circle on a blue background", "red", "blue"),
    ("a blue square on a white background", "blue", "white"),
    ("a green triangle on a black background", "green", "black"),
    ("a yellow circle on a gray background", "yellow", "gray"),
])
def test_prompted_background_wins_and_the_shape_keeps_its_colour(demo, prompt, color, bg):
    """The other new attribute: a background colour, told apart from the shape's colour word (blue is both)."""
    images = txt2img(demo, prompt)
    bg_hits, color_hits = hits(images, background, bg), hits(images, image_metrics.dominant_color, color)
    print(f"{prompt!r}: background {bg_hits}/{SEEDS}, colour {color_hits}/{SEEDS}")
    assert bg_hits >= 8, [background(i) for i in images]
    assert color_hits >= 8, [image_metrics.dominant_color(i) for i in images]


def test_every_attribute_at_once(demo):
    prompt = "a small red circle on the left on a blue background"
    images = txt2img(demo, prompt)
    counts = {"colour": hits(images, image_metrics.dominant_color, "red"),
              "side": hits(images, image_metrics.side, "left"),
              "size": hits(images, image_metrics.size, "small"),
              "background": hits(images, background, "blue")}
    print(f"{prompt!r}: {counts}")
    assert counts["colour"] >= 8 and counts["background"] >= 8
    assert counts["side"] >= 7 and counts["size"] >= 7


def test_negative_prompt_pushes_a_colour_away(demo):
    plain = txt2img(demo, "a circle", seed=2000)
    negative = txt2img(demo, "a circle", negative_prompt="red", seed=2000)
    red_plain = sum(image_metrics.color_share(i, "red") for i in plain)
    red_negative = sum(image_metrics.color_share(i, "red") for i in negative)
    print(f"red share: {red_plain / SEEDS:.4f} without, {red_negative / SEEDS:.4f} with negative 'red'")
    assert red_negative < red_plain


# --- img2img and inpaint, as for the v1 demo (tests/test_demo_pipelines.py) ---------------------------

def img2img(model, init: Image.Image, prompt: str, strength: float, seed: int, mask=None, **kw) -> list:
    p = StableDiffusionProcessingImg2Img(sd_model=model, env=env(), prompt=prompt, seed=seed, batch_size=SEEDS,
                                         init_images=[init], denoising_strength=strength, image_mask=mask,
                                         **GEN, **kw)
    return [np.asarray(im.convert("RGB")) for im in process_images(p).images]


def first_image(model, prompt: str, seed: int) -> Image.Image:
    p = StableDiffusionProcessingTxt2Img(sd_model=model, env=env(), prompt=prompt, seed=seed, **GEN)
    return process_images(p).images[0]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(float).ravel(), b.astype(float).ravel())[0, 1])


def test_img2img_low_denoising_keeps_the_layout_high_denoising_follows_the_prompt(demo32):
    init = first_image(demo32, "a large red circle on the left on a gray background", seed=11)
    source = np.asarray(init.convert("RGB"))
    assert image_metrics.dominant_color(source) == "red"
    kept = img2img(demo32, init, "a large red circle on the left on a gray background", 0.3, seed=100)
    correlations = [correlation(source, out) for out in kept]
    print("denoising 0.3 correlation with the input:", [round(c, 3) for c in correlations])
    assert min(correlations) > 0.9
    changed = img2img(demo32, init, "a blue circle on the left", 0.9, seed=100)
    blue = sum(image_metrics.dominant_color(out) == "blue" for out in changed)
    print(f"denoising 0.9 with 'blue': blue in {blue}/{SEEDS}")
    assert blue >= 8


def test_inpaint_paints_the_masked_side_and_keeps_the_rest(demo32):
    init = first_image(demo32, "a large red circle on the left on a gray background", seed=12)
    source = np.asarray(init.convert("RGB"))
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (SIZE // 2, 0, SIZE, SIZE))  # the right half
    outs = img2img(demo32, init, "a green square on the right", 1.0, seed=200, mask=mask, mask_blur=0,
                   inpainting_fill=1, inpaint_full_res=False)
    right = slice(SIZE // 2 + 1, SIZE)
    greens = [image_metrics.color_share(out[:, right], "green") for out in outs]
    print("green share in the masked half:", [round(g, 3) for g in greens])
    assert sum(g > 0.05 for g in greens) >= 8
    for out in outs:  # outside the mask: the original pixels, exactly
        assert np.array_equal(out[:, : SIZE // 2 - 1], source[:, : SIZE // 2 - 1])


# --- the HTTP API and the browser -------------------------------------------------------------------

def test_the_api_draws_the_prompted_colour_and_background(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tests.api_support import b64_image, make_context
    from webui.api import routes

    ckpts = tmp_path / "models" / "Stable-diffusion"
    ckpts.mkdir(parents=True)
    shutil.copy(SD3_DEMO, ckpts / FILE_NAME)
    ctx = make_context(tmp_path)
    app = FastAPI()
    routes.install(app, ctx)
    client = TestClient(app)
    listed = client.get("/sdapi/v1/sd-models").json()
    assert [m["model_name"] for m in listed] == ["demo-sd3"]
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "a blue square on a white background", "seed": 300,
                                               "batch_size": SEEDS, **GEN})
    assert r.status_code == 200, r.text
    images = [np.asarray(b64_image(b).convert("RGB")) for b in r.json()["images"]]
    images = [im for im in images if im.shape == (SIZE, SIZE, 3)]  # the grid, if any, is wider
    blue, white = hits(images, image_metrics.dominant_color, "blue"), hits(images, background, "white")
    print(f"API 'a blue square on a white background': blue in {blue}/{len(images)}, white in {white}")
    assert len(images) == SEEDS and blue >= 8 and white >= 8
    assert "Model: demo-sd3" in r.json()["info"]


@pytest.mark.browser
def test_the_browser_opens_at_the_demos_native_size_and_draws_the_prompt(tmp_path):
    """A user whose only model is the SD3 demo: the tabs take its family's defaults (its
    modelspec.resolution, 32 px) and a generation from the page follows the prompt's colours."""
    from tests import browser_support as bs

    ckpts = tmp_path / "models" / "Stable-diffusion"
    ckpts.mkdir(parents=True)
    shutil.copy(SD3_DEMO, ckpts / FILE_NAME)
    session = bs.serve(tmp_path)
    _, url, page = next(session)
    try:
        page.wait_for_function("() => document.querySelector('#txt2img_width input[type=number]').value === '32'")
        page.fill("#txt2img_prompt textarea", "a blue square on a white background")
        page.fill("#txt2img_seed input", "300")
        page.click("#txt2img_generate")
        info = bs.wait_for_gallery(page, "txt2img")
        src = page.locator("#txt2img_gallery img").first.get_attribute("src")
        data = page.request.get(src if src.startswith("http") else url + src).body()
    finally:
        session.close()
    assert "Model: demo-sd3" in info and "Size: 32x32" in info and "Sampler: Euler" in info
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert image_metrics.dominant_color(image) == "blue" and background(image) == "white"
