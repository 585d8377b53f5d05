"""The "LDSR" upscaler entry: its files in models/LDSR, settings, cache, progress and interrupt, and the
API (upscaler list, Extras, hires fix) with a tiny random-weight bsr_sr-layout model."""
from __future__ import annotations

import shutil

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from safetensors.torch import save_file

from modules.jobs import Job
from modules.ldsr.service import LDSRUpscaler
from tests.api_support import b64_image, gradient, make_context, png_b64, write_tiny_checkpoint
from tests.test_ldsr import TINY_LDSR, tiny_ldsr
from webui.api import routes

API = "/sdapi/v1"


def write_tiny_ldsr(folder, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tiny_ldsr(seed).state_dict().items()}, folder / "model.safetensors")
    shutil.copy(TINY_LDSR, folder / "project.yaml")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    root = tmp_path_factory.mktemp("ldsr-data")
    write_tiny_checkpoint(root / "models" / "Stable-diffusion", "tiny-a", "tiny-v1", seed=1)
    write_tiny_ldsr(root / "models" / "LDSR")
    ctx = make_context(root)
    ctx.opts.set("ldsr_steps", 2)
    return ctx


@pytest.fixture(scope="module")
def client(ctx):
    app = FastAPI()
    routes.install(app, ctx)
    return TestClient(app, raise_server_exceptions=False)


def test_ldsr_is_in_the_upscaler_lists(client):
    items = {u["name"]: u for u in client.get(f"{API}/upscalers").json()}
    assert items["LDSR"]["scale"] == 4 and items["LDSR"]["model_name"] == "LDSR"


def test_settings_are_a1111s(ctx, client):
    info = ctx.opts.registry["ldsr_steps"]
    assert (info.default, info.minimum, info.maximum, info.section) == (100, 1, 200, "upscaling")
    assert ctx.opts.registry["ldsr_cached"].default is False
    assert client.get(f"{API}/options").json()["ldsr_steps"] == 2  # this test's value


def test_extras_upscales_with_ldsr(client):
    source = png_b64(gradient(24, 20))
    r = client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "LDSR", "upscaling_resize": 4})
    assert r.status_code == 200, r.text
    out = b64_image(r.json()["image"])
    assert out.size == (96, 80)
    assert "Postprocess upscaler: LDSR" in out.info["parameters"]
    r = client.post(f"{API}/extra-single-image", json={"image": source, "upscaler_1": "LDSR", "upscaling_resize": 2})
    assert b64_image(r.json()["image"]).size == (48, 40)  # pre-resized to 12x10, 4x, as A1111


def test_hires_fix_with_ldsr(client):
    r = client.post(f"{API}/txt2img", json={"prompt": "a red circle", "steps": 2, "width": 64, "height": 64,
                                             "enable_hr": True, "hr_upscaler": "LDSR", "hr_scale": 2,
                                             "hr_second_pass_steps": 1, "denoising_strength": 0.3, "seed": 1})
    assert r.status_code == 200, r.text
    assert b64_image(r.json()["images"][0]).size == (128, 128)
    assert "Hires upscaler: LDSR" in r.json()["info"]


class RecordingJob(Job):
    def __init__(self, stop_after: int | None = None):
        super().__init__(name="extras")
        self.steps_seen: list = []
        self.stop_after = stop_after

    def set_step(self, step, preview=None):
        super().set_step(step, preview)
        self.steps_seen.append((step, self.sampling_steps))
        if self.stop_after is not None and step >= self.stop_after:
            self.interrupt()


def test_progress_and_interrupt_through_the_job(ctx):
    service = ctx.services.upscalers.get("LDSR").service
    image = Image.new("RGB", (16, 16), (30, 200, 40))
    job = RecordingJob()
    job.sampling_steps, job.textinfo = 7, "Batch 1"
    assert service.upscale(image, 64, 64, job=job).size == (64, 64)
    assert job.steps_seen == [(1, 2), (2, 2)]
    assert (job.sampling_steps, job.textinfo) == (7, "Batch 1")  # a hires pass's progress is given back
    with ctx.opts.override({"ldsr_steps": 50}):
        job = RecordingJob(stop_after=3)
        assert service.upscale(image, 64, 64, job=job).size == (64, 64)
    assert [s for s, _ in job.steps_seen] == [1, 2, 3]  # stopped, the last prediction decoded


def test_cache_setting(ctx):
    service = ctx.services.upscalers.get("LDSR").service
    with ctx.opts.override({"ldsr_cached": True}):
        assert service.model() is service.model()
    assert service.model() is not service.model()


def test_without_the_model_the_entry_says_what_to_get(tmp_path, ctx):
    empty = make_context(tmp_path)
    service = LDSRUpscaler(empty, fallback_dirs=())  # not even the shipped demo
    with pytest.raises(ValueError, match=r"model\.ckpt .*project\.yaml into .*LDSR.*heibox"):
        service(Image.new("RGB", (8, 8)), 32, 32)
    empty.services.upscalers.register(service.entry())
    app = FastAPI()
    routes.install(app, empty)
    r = TestClient(app, raise_server_exceptions=False).post(
        f"{API}/extra-single-image", json={"image": png_b64(gradient(8, 8)), "upscaler_1": "LDSR"})
    assert r.status_code == 422 and "project.yaml" in r.text


def test_ldsr_models_path_flag(tmp_path):
    folder = tmp_path / "elsewhere"
    write_tiny_ldsr(folder, seed=3)
    ctx = make_context(tmp_path / "data", "--ldsr-models-path", str(folder))
    service = LDSRUpscaler(ctx, fallback_dirs=())
    assert service.files().model == folder / "model.safetensors"
    reference = tiny_ldsr(3)
    torch.testing.assert_close(service.model().state_dict(), reference.state_dict())
