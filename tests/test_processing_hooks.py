"""Hook points for scripts/callbacks, and the tiled VAE blending."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from modules.jobs import Job
from modules.options import Options
from modules.processing import ProcessingEnv, StableDiffusionProcessingTxt2Img, process_images
from modules.processing.vae import run_tiled
from tests.tiny import make_tiny_model


class RecordingScripts:
    """Shaped like A1111's ScriptRunner: records the hook calls; `process` edits the prompt."""

    def __init__(self):
        self.calls = []

    def before_process(self, p):
        self.calls.append("before_process")

    def process(self, p):
        self.calls.append("process")
        p.all_prompts = [x + ", masterpiece" for x in p.all_prompts]

    def before_process_batch(self, p, batch_number, prompts, seeds, subseeds):
        self.calls.append(f"before_process_batch {batch_number} {seeds}")

    def process_batch(self, p, batch_number, prompts, seeds, subseeds):
        self.calls.append(f"process_batch {batch_number}")

    def postprocess_batch(self, p, images, batch_number):
        self.calls.append(f"postprocess_batch {batch_number} {tuple(images.shape)}")

    def postprocess_image(self, p, pp):
        self.calls.append("postprocess_image")

    def postprocess(self, p, processed):
        self.calls.append(f"postprocess {len(processed.images)}")


def test_script_hooks_are_called_in_a1111_order_and_can_edit_the_job():
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False})
    scripts = RecordingScripts()
    p = StableDiffusionProcessingTxt2Img(sd_model=make_tiny_model("tiny-v1"), env=ProcessingEnv(opts=opts, job=Job("t")),
                                         prompt="a cat", seed=3, steps=2, width=64, height=64, n_iter=2,
                                         scripts=scripts)
    res = process_images(p)
    assert scripts.calls == [
        "before_process", "process",
        "before_process_batch 0 [3]", "process_batch 0", "postprocess_batch 0 (1, 3, 64, 64)", "postprocess_image",
        "before_process_batch 1 [4]", "process_batch 1", "postprocess_batch 1 (1, 3, 64, 64)", "postprocess_image",
        "postprocess 2"]
    assert res.infotexts[0].startswith("a cat, masterpiece\n")


def test_tiled_run_blends_back_to_the_whole_result():
    x = torch.randn(1, 4, 20, 28)

    def up(t):
        return F.interpolate(t, scale_factor=2, mode="nearest")[:, :3]

    tiled = run_tiled(up, x, tile=8, overlap=3, scale=2, out_channels=3)
    assert torch.allclose(tiled, up(x), atol=1e-6)


def _env(**settings):
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False,
                 **settings})
    return ProcessingEnv(opts=opts, job=Job("t"))


def test_a1111_create_infotext_signature_matches_the_job_infotexts():
    from modules.processing import create_infotext

    p = StableDiffusionProcessingTxt2Img(sd_model=make_tiny_model("tiny-v1"), env=_env(), prompt="a cat", seed=3,
                                         steps=2, width=64, height=64, batch_size=2, n_iter=2)
    res = process_images(p)
    assert create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, None, 1, 1) == res.infotexts[3]
    assert "Seed: 6," in res.infotexts[3]


def test_image_conditioner_plugs_a_depth_model_into_img2img():
    from PIL import Image

    from modules.processing import StableDiffusionProcessingImg2Img

    seen = []

    def flat_depth(p, source, image_mask):  # depth2img's place: a depth map as c_concat [B, 1, h, w]
        f = p.sd_model.vae_scale_factor
        seen.append(tuple(source.shape))
        return torch.zeros(source.shape[0], 1, source.shape[2] // f, source.shape[3] // f)

    p = StableDiffusionProcessingImg2Img(sd_model=make_tiny_model("tiny-v2-depth"), env=_env(), prompt="a cat",
                                         init_images=[Image.new("RGB", (64, 48), (200, 30, 30))], steps=3,
                                         width=64, height=48, denoising_strength=0.8, image_conditioner=flat_depth)
    res = process_images(p)
    assert res.images[0].size == (64, 48) and seen == [(1, 3, 48, 64)]


def test_approx_live_preview():
    env = _env(live_previews_enable=True, show_progress_every_n_steps=1, show_progress_type="Approx cheap")
    p = StableDiffusionProcessingTxt2Img(sd_model=make_tiny_model("tiny-v1"), env=env, prompt="a cat", seed=3,
                                         steps=2, width=64, height=48)
    process_images(p)
    assert env.job.current_image is not None and env.job.current_image.size[0] > 0
