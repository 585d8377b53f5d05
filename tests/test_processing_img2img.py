"""img2img and inpaint on tiny random-weight models: denoising 0 is the VAE round trip, resize
modes, masks keep the original outside the blurred mask exactly, only-masked pastes back in place,
9-channel inpainting models get [mask, masked-image latent]."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.jobs import Job
from modules.options import Options
from modules.processing import ProcessingEnv, StableDiffusionProcessingImg2Img, process_images, vae
from modules.processing.img2img import resize_image
from modules.processing.inpaint import inpainting_image_conditioning
from tests.tiny import make_tiny_model

BLUR = 4
MARGIN = 12  # a sigma-4 blur (truncated at 2.5 sigma) reaches 10 px beyond the mask


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


@pytest.fixture(scope="module")
def v1_inpaint():
    return make_tiny_model("tiny-v1-inpainting")


def make_env():
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False})
    return ProcessingEnv(opts=opts, job=Job("test"))


def picture(w=64, h=64, seed=0):
    """A smooth colourful test picture (gradients + a disc), deterministic."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = np.where((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 4) ** 2, 220.0, 40.0)
    rng = np.random.default_rng(seed)
    noise = rng.integers(-8, 9, size=(h, w, 3))
    return Image.fromarray(np.clip(np.stack([r, g, b], -1) + noise, 0, 255).astype(np.uint8))


def rect_mask(w, h, box):
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, box)
    return mask


def img2img(model, **kw):
    args = dict(prompt="a cat", seed=321, steps=4, width=64, height=64, sampler_name="Euler a", cfg_scale=5.0,
                denoising_strength=0.75, mask_blur=BLUR)
    args.update(kw)
    return process_images(StableDiffusionProcessingImg2Img(sd_model=model, env=make_env(), **args))


def arr(image):
    return np.asarray(image, dtype=np.int16)


def outside(box, w, h, margin=MARGIN):
    """Boolean (h, w) map of pixels farther than margin from box (x1, y1, x2, y2)."""
    keep = np.ones((h, w), bool)
    x1, y1, x2, y2 = box
    keep[max(y1 - margin, 0):y2 + margin, max(x1 - margin, 0):x2 + margin] = False
    return keep


def test_denoising_zero_returns_the_vae_round_trip(v1):
    init = picture(64, 48)
    res = img2img(v1, init_images=[init], denoising_strength=0.0, width=64, height=48)
    expected = vae.tensor_to_pil(vae.decode(v1, vae.encode(v1, vae.pil_to_tensor([init]))))[0]
    assert res.images[0].tobytes() == expected.tobytes()


def test_denoising_changes_the_image_and_is_reproducible(v1):
    init = picture()
    a = img2img(v1, init_images=[init], denoising_strength=0.6)
    b = img2img(v1, init_images=[init], denoising_strength=0.6)
    zero = img2img(v1, init_images=[init], denoising_strength=0.0)
    assert a.images[0].tobytes() == b.images[0].tobytes()
    assert np.abs(arr(a.images[0]) - arr(zero.images[0])).max() > 10
    assert "Denoising strength: 0.6" in a.infotexts[0]


def test_resize_modes():
    wide = Image.new("RGB", (80, 40), (255, 0, 0))
    wide.paste((0, 0, 255), (20, 0, 60, 40))  # blue centre, red sides
    crop = resize_image(1, wide, 40, 40)
    assert crop.size == (40, 40) and crop.getpixel((2, 20)) == (0, 0, 255)  # sides cropped away
    fill = np.asarray(resize_image(2, wide, 40, 40))
    assert fill.shape == (40, 40, 3) and (fill.sum(-1) > 0).all()  # bars filled, no black
    assert resize_image(0, wide, 40, 40).getpixel((1, 20))[0] > 200  # stretched: red stays at the side


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_img2img_resize_modes_give_the_requested_size(v1, mode):
    res = img2img(v1, init_images=[picture(96, 48)], resize_mode=mode, width=64, height=64, steps=2)
    assert res.images[0].size == (64, 64)


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inpaint_keeps_pixels_outside_the_blurred_mask(v1, fill):
    init = picture()
    box = (24, 20, 44, 40)
    res = img2img(v1, init_images=[init], image_mask=rect_mask(64, 64, box), inpainting_fill=fill,
                  inpaint_full_res=False, denoising_strength=0.9)
    out, orig = arr(res.images[0]), arr(init)
    keep = outside(box, 64, 64)
    assert (out[keep] == orig[keep]).all()
    x1, y1, x2, y2 = box
    assert np.abs(out[y1:y2, x1:x2] - orig[y1:y2, x1:x2]).max() > 10  # the masked area was repainted
    assert "Mask blur: 4" in res.infotexts[0]


def test_inpaint_with_a_9_channel_model(v1_inpaint):
    init = picture()
    box = (16, 16, 40, 48)
    res = img2img(v1_inpaint, init_images=[init], image_mask=rect_mask(64, 64, box), inpaint_full_res=False,
                  denoising_strength=1.0, batch_size=2)
    orig = arr(init)
    keep = outside(box, 64, 64)
    for image in res.images:
        assert (arr(image)[keep] == orig[keep]).all()
        assert np.abs(arr(image)[16:48, 16:40] - orig[16:48, 16:40]).max() > 10


def test_inpainting_conditioning_is_mask_then_masked_image_latent(v1_inpaint):
    source = vae.pil_to_tensor([picture()])
    mask = rect_mask(64, 64, (0, 0, 32, 64))  # left half repainted
    c = inpainting_image_conditioning(v1_inpaint, source, mask, 1.0, lambda x: vae.encode(v1_inpaint, x))
    assert c.shape == (1, 5, 8, 8)
    assert (c[0, 0, :, :4] == 1).all() and (c[0, 0, :, 4:] == 0).all()  # channel 0: the mask
    masked = source.clone()
    masked[:, :, :, :32] = 0  # repainted area greyed out before encoding
    assert torch.equal(c[:, 1:], vae.encode(v1_inpaint, masked))


def test_mask_from_the_init_images_alpha(v1):
    init = picture().convert("RGBA")
    alpha = Image.new("L", (64, 64), 255)
    alpha.paste(0, (20, 20, 40, 40))  # transparent = repaint
    init.putalpha(alpha)
    res = img2img(v1, init_images=[init], inpaint_full_res=False, denoising_strength=0.9)
    out, orig = arr(res.images[0]), arr(init.convert("RGB"))
    keep = outside((20, 20, 40, 40), 64, 64)
    assert (out[keep] == orig[keep]).all() and np.abs(out[20:40, 20:40] - orig[20:40, 20:40]).max() > 10


def test_inverted_mask_repaints_the_outside(v1):
    init = picture()
    box = (8, 8, 56, 56)
    res = img2img(v1, init_images=[init], image_mask=rect_mask(64, 64, box), inpainting_mask_invert=1,
                  inpaint_full_res=False, denoising_strength=0.9)
    out, orig = arr(res.images[0]), arr(init)
    assert (out[8 + MARGIN:56 - MARGIN, 8 + MARGIN:56 - MARGIN] == orig[8 + MARGIN:56 - MARGIN, 8 + MARGIN:56 - MARGIN]).all()
    assert np.abs(out[:4] - orig[:4]).max() > 10


def test_only_masked_crops_and_pastes_back_in_place(v1):
    init = picture(128, 96)
    box = (84, 10, 100, 26)
    res = img2img(v1, init_images=[init], image_mask=rect_mask(128, 96, box), inpaint_full_res=True,
                  inpaint_full_res_padding=8, width=64, height=64, denoising_strength=0.9)
    out, orig = arr(res.images[0]), arr(init)
    assert res.images[0].size == (128, 96)  # the original's size, not the processing size
    changed = np.argwhere(np.abs(out - orig).max(-1) > 0)
    assert len(changed) > 0
    (y1, x1), (y2, x2) = changed.min(0), changed.max(0)
    assert x1 >= box[0] - MARGIN and y1 >= max(box[1] - MARGIN, 0)
    assert x2 < box[2] + MARGIN and y2 < box[3] + MARGIN
    # the repaint is where the mask is, not somewhere else of the same size
    assert np.abs(out[box[1]:box[3], box[0]:box[2]] - orig[box[1]:box[3], box[0]:box[2]]).max() > 10
    assert "Inpaint area: Only masked" in res.infotexts[0]


def test_img2img_errors(v1):
    with pytest.raises(ValueError, match="needs an init image"):
        img2img(v1, init_images=[])
    with pytest.raises(ValueError, match="denoising strength must be between 0 and 1"):
        img2img(v1, init_images=[picture()], denoising_strength=1.5)
    with pytest.raises(ValueError, match="depth2img"):
        img2img(make_tiny_model("tiny-v2-depth"), init_images=[picture()])


@pytest.mark.parametrize("sampler", ["DPM++ 2M SDE", "DDIM", "DPM adaptive", "Heun"])
def test_img2img_runs_the_schedule_tail_with_other_samplers(sampler):
    model = make_tiny_model("tiny-v2-v")
    a = img2img(model, init_images=[picture(64, 48)], width=64, height=48, steps=4, sampler_name=sampler,
                denoising_strength=0.5)
    b = img2img(model, init_images=[picture(64, 48)], width=64, height=48, steps=4, sampler_name=sampler,
                denoising_strength=0.5)
    assert a.images[0].size == (64, 48) and a.images[0].tobytes() == b.images[0].tobytes()
