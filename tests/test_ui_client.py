"""The web UI's named endpoints, driven with gradio_client against a real server and tiny checkpoints."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.api_support import gradient, make_context, make_data_dir, write_tiny_checkpoint
from tests.live_server import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_data_dir(tmp_path_factory.mktemp("ui"))
    ckpts = root / "models" / "Stable-diffusion"
    write_tiny_checkpoint(ckpts, "tiny-depth", "tiny-v2-depth", seed=4)
    write_tiny_checkpoint(ckpts, "tiny-x4", "tiny-x4", seed=5)
    ctx = make_context(root)
    with LiveServer(ctx) as url:
        from gradio_client import Client
        yield ctx, Client(url, verbose=False)


def api_params(client, api_name: str) -> list[str]:
    info = client.view_api(return_format="dict", print_info=False)
    return [p["parameter_name"] for p in info["named_endpoints"][api_name]["parameters"]]


def test_txt2img_endpoint_makes_images_with_infotext(server):
    ctx, client = server
    names = api_params(client, "/txt2img")
    assert {"prompt", "negative_prompt", "seed", "steps", "width", "height"} <= set(names), names
    gallery, infotext, *_ = client.predict(prompt="a red circle", steps=3, width=96, height=64, seed=7,
                                           batch_size=2, api_name="/txt2img")
    assert len(gallery) == 3  # the grid first (return_grid), then the two images, as in A1111
    grid, first, second = (Image.open(g["image"]) for g in gallery)
    assert grid.size == (192, 64) and first.size == (96, 64)
    assert "Seed: 7" in infotext and "Steps: 3" in infotext and "Size: 96x64" in infotext
    assert "Seed: 7," in first.info["parameters"] and "Seed: 8," in second.info["parameters"]


def test_the_ui_and_the_api_make_the_same_image_and_infotext(server):
    """Both front ends hand the same request to the engine's one entry point."""
    import base64
    import io

    import httpx
    ctx, client = server
    request = {"prompt": "a (red:1.2) circle", "negative_prompt": "blue", "steps": 4, "width": 64, "height": 64,
               "seed": 21, "cfg_scale": 6.5, "sampler_name": "DPM++ 2M", "scheduler": "Karras"}
    gallery, ui_infotext, *_ = client.predict(**request, api_name="/txt2img")
    ui_image = Image.open(gallery[-1]["image"]).convert("RGB")
    body = httpx.post(f"{client.src.rstrip('/')}/sdapi/v1/txt2img", json=request, timeout=120).json()
    api_image = Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).convert("RGB")
    assert list(ui_image.getdata()) == list(api_image.getdata())
    assert ui_infotext == json.loads(body["info"])["infotexts"][0]


def test_img2img_endpoint_uses_the_uploaded_image(server):
    ctx, client = server
    from gradio_client import handle_file
    path = ctx.paths.data_dir / "init.png"
    gradient(64, 64).save(path)
    names = api_params(client, "/img2img")
    assert "init_img" in names and "denoising_strength" in names
    kwargs = {"denoising_strength": 0.5, "init_img": handle_file(str(path))}
    gallery, infotext, *_ = client.predict(prompt="x", steps=2, width=64, height=64, api_name="/img2img",
                                           **kwargs)
    assert Image.open(gallery[-1]["image"]).size == (64, 64)
    assert "Denoising strength: 0.5" in infotext


def test_png_info_endpoint_reads_back_parameters(server):
    ctx, client = server
    from gradio_client import handle_file
    gallery, infotext, *_ = client.predict(prompt="a blue square", steps=2, width=64, height=64, seed=3,
                                           api_name="/txt2img")
    text, _ = client.predict(handle_file(gallery[-1]["image"]), api_name="/pnginfo")
    assert text == infotext


def test_settings_apply_validates_and_persists(server):
    ctx, client = server
    # every setting but the quick settings, which live in the top bar only (one control per setting)
    assert set(api_params(client, "/apply_settings")) == set(ctx.opts.registry) - set(ctx.opts.quicksettings_list)
    message = client.predict(jpeg_quality=55, api_name="/apply_settings")
    assert message.startswith("1 settings changed: jpeg_quality")
    assert json.loads(ctx.paths.config_file.read_text())["jpeg_quality"] == 55
    with pytest.raises(Exception, match="maximum value 100|between 1 and 100"):
        client.predict(jpeg_quality=500, api_name="/apply_settings")
    assert ctx.opts.jpeg_quality == 55


def test_switch_checkpoint_endpoint(server):
    ctx, client = server
    titles = ctx.models.catalog.titles()
    target = next(t for t in titles if t.startswith("tiny-b"))
    status = client.predict(target, api_name="/switch_checkpoint")
    assert "tiny-b" in status and ctx.models.current.info.title == target
    assert ctx.opts.sd_model_checkpoint == target


def test_bad_input_is_a_message_and_the_server_keeps_working(server):
    ctx, client = server
    from gradio_client import handle_file
    bad = ctx.paths.data_dir / "not-an-image.png"
    bad.write_text("this is text")
    with pytest.raises(Exception) as e:
        client.predict(prompt="x", steps=2, api_name="/img2img", init_img=handle_file(str(bad)))
    assert "not an image" in str(e.value)
    assert "Traceback" not in str(e.value)
    gallery, *_ = client.predict(prompt="still works", steps=2, width=64, height=64, api_name="/txt2img")
    assert len(gallery) == 1


def test_extras_upscales_with_lanczos_and_sd_x4(server):
    ctx, client = server
    from gradio_client import handle_file
    path = ctx.paths.data_dir / "small.png"
    gradient(32, 24).save(path)
    _, gallery, info = client.predict(handle_file(str(path)), "Lanczos", 2.0, 0, 0, "", api_name="/extras")
    assert Image.open(gallery[0]["image"]).size == (64, 48)
    _, gallery, info = client.predict(handle_file(str(path)), "SD x4", 4.0, 0, 0, "sharp", api_name="/extras")
    assert Image.open(gallery[0]["image"]).size == (128, 96)
    assert "Postprocess upscaler: SD x4" in info
    saved = sorted((ctx.paths.data_dir / "outputs" / "extras-images").rglob("*.png"))
    assert len(saved) == 2 and Image.open(saved[-1]).info["parameters"] == info


def test_depth2img_with_a_user_depth_map_on_a_depth_checkpoint(server):
    ctx, client = server
    from gradio_client import handle_file
    image, depth = ctx.paths.data_dir / "d-image.png", ctx.paths.data_dir / "d-depth.png"
    gradient(64, 64).save(image)
    gradient(64, 64).convert("L").save(depth)
    # an ordinary model is loaded: depth2img takes the depth checkpoint of the catalog beside it
    assert not ctx.models.current or "depth" not in ctx.models.current.info.title
    _, gallery, used, infotext = client.predict(handle_file(str(image)), handle_file(str(depth)), "a room", "",
                                                "Euler", "Automatic", 2, 7.0, 0.6, 1, 1, api_name="/depth2img")
    assert "Depth map: user" in infotext
    client.predict(next(t for t in ctx.models.catalog.titles() if t.startswith("tiny-depth")),
                   api_name="/switch_checkpoint")
    _, gallery, used, infotext = client.predict(handle_file(str(image)), handle_file(str(depth)), "a room", "",
                                                "Euler", "Automatic", 2, 7.0, 0.6, 1, 1, api_name="/depth2img")
    assert Image.open(gallery[0]["image"]).size == (64, 64)
    assert "Depth map: user" in infotext
    # txt2img with a depth checkpoint points at the depth2img tab
    with pytest.raises(Exception, match="depth2img"):
        client.predict(prompt="x", steps=2, width=64, height=64, api_name="/txt2img")
    client.predict(next(t for t in ctx.models.catalog.titles() if t.startswith("tiny-a")), api_name="/switch_checkpoint")


def test_a_closed_browser_tab_leaves_no_zombie_job(server):
    """Gradio closes the event's generator when its client goes away: the running job is interrupted."""
    ctx, client = server
    import time
    # long enough on a quiet machine too: 150 Heun steps (2 UNet calls each) on a batch of 4 at 256x256
    job = client.submit(prompt="a long one", steps=150, width=256, height=256, batch_size=4,
                        sampler_name="Heun", api_name="/txt2img")
    deadline = time.time() + 60
    # cancel as soon as the work starts: within Gradio's first step of the generator, the case that
    # once left the job running (the generator was not yet registered for closing)
    while ctx.jobs.current is None:
        assert time.time() < deadline, "the job never started"
        time.sleep(0.01)
    running = ctx.jobs.current
    job.cancel()
    deadline = time.time() + 30
    while ctx.jobs.current is not None and time.time() < deadline:
        time.sleep(0.05)
    assert ctx.jobs.current is None and running.interrupted
    assert running.sampling_step < 150


def test_save_prompts_as_a_style(server):
    ctx, client = server
    update, name_box = client.predict("my style", "a cat, {prompt}", "blurry", api_name="/txt2img_save_style")
    assert "my style" in ctx.services.styles.styles
    assert "my style" in ctx.paths.styles_file.read_text()
    with pytest.raises(Exception, match="needs a name"):
        client.predict("", "x", "", api_name="/txt2img_save_style")
