"""The app's GPU path: precisions, the GPU and NV noise sources, --medvram / --lowvram, interrupt.

Skipped (with the reason) on a machine without CUDA; `bash scripts/gpu_check.sh` runs them on a GPU
machine together with the 512x512 benchmark. Each test compares the GPU against the CPU or fp32
reference it must equal, so a broken kernel, dtype or device move shows as a failure here.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from modules import generation
from modules.generation import GenerationRequest
from modules.models.loader import build_model
from modules.models.offload import Offloader
from modules.options import Options
from modules.processing.objects import ProcessingCallbacks, ProcessingEnv, StableDiffusionProcessingTxt2Img
from modules.processing.pipeline import process_images
from modules.sampling import rng
from tests.api_support import make_context, make_data_dir
from tests.tiny import make_tiny_model

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs an NVIDIA GPU: run `bash scripts/gpu_check.sh` on a GPU machine")]
CUDA = torch.device("cuda")


def networks_out(model, dtype):
    """Text encoder, UNet and VAE outputs of `model` (on the GPU) for fixed inputs, as fp32."""
    gen = torch.Generator("cpu").manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=gen).to(CUDA, dtype)
    with torch.no_grad():
        cond = model.get_learned_conditioning(["a red circle", "a blue square on the left"])
        eps = model.apply_model(x, torch.tensor([999, 300], device=CUDA), cond.to(dtype))
        image = model.decode_first_stage(x)
    return cond.float(), eps.float(), image.float()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 1e-2), (torch.bfloat16, 4e-2)])
@pytest.mark.parametrize("config", ["tiny-v1", "tiny-v2-v"])
def test_half_precision_networks_equal_fp32(config, dtype, tolerance):
    model = make_tiny_model(config).to(CUDA)
    reference = networks_out(model, torch.float32)
    half = copy.deepcopy(model).to(dtype)
    for name, ref, got in zip(("text encoder", "UNet", "VAE"), reference, networks_out(half, dtype), strict=True):
        assert torch.isfinite(got).all(), name
        error = (got - ref).abs().max() / ref.abs().max()
        assert error < tolerance, f"{name} in {dtype}: {error:.2e} of the output scale"


def test_nv_noise_equals_torch_randn_on_the_card():
    """NV = NVIDIA's Philox reimplemented: the CPU reproduces what CUDA's generator draws."""
    for seed, shape in ((0, (4, 64, 64)), (1234, (4, 96, 64)), (2**32 - 1, (16, 8, 8))):
        card = torch.randn(shape, generator=torch.Generator(CUDA).manual_seed(seed), device=CUDA).cpu()
        nv = rng.randn(seed, shape, source="NV")
        assert torch.allclose(nv, card, atol=1e-4), (seed, (nv - card).abs().max().item())


def test_gpu_noise_source_is_the_cards_generator():
    card = torch.randn((4, 32, 32), generator=torch.Generator(CUDA).manual_seed(7), device=CUDA)
    assert torch.equal(rng.randn(7, (4, 32, 32), source="GPU", device=CUDA), card)


def sd15_pipeline_image(model, steps: int = 3) -> tuple[np.ndarray, int]:
    """A 256x256 txt2img on an SD1.5-size model; (pixels, peak GPU memory in bytes)."""
    p = StableDiffusionProcessingTxt2Img(prompt="a photo of a cat", steps=steps, width=256, height=256, seed=1,
                                         sampler_name="Euler", do_not_save_samples=True, do_not_save_grid=True)
    p.sd_model, p.env = model, ProcessingEnv(opts=Options())
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    processed = process_images(p)
    torch.cuda.synchronize()
    return np.asarray(processed.images[0], dtype=np.int16), torch.cuda.max_memory_allocated()


def test_medvram_and_lowvram_make_the_same_image_in_less_memory():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = build_model("v1-inference", device="cpu", dtype=torch.float32)  # SD1.5 size, random weights
    whole = copy.deepcopy(base).to(CUDA)
    reference, peak_whole = sd15_pipeline_image(whole)
    del whole
    torch.cuda.empty_cache()
    peaks = {}
    for mode in ("med", "low"):
        model = copy.deepcopy(base)
        Offloader(CUDA).install(model, mode)
        image, peaks[mode] = sd15_pipeline_image(model)
        assert np.abs(image - reference).max() <= 2, mode  # the same image, up to kernel rounding
        del model
        torch.cuda.empty_cache()
    assert peaks["med"] < peak_whole - 300 * 2**20, (peaks, peak_whole)  # text encoder + VAE stay off
    assert peaks["low"] < peaks["med"], peaks
    print(f"peak GPU memory: whole {peak_whole / 2**30:.2f} GiB, --medvram {peaks['med'] / 2**30:.2f}, "
          f"--lowvram {peaks['low'] / 2**30:.2f}")


@pytest.fixture(scope="module")
def gpu_ctx(tmp_path_factory):
    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("cuda")))  # no --use-cpu: the GPU, fp16
    ctx.services.callbacks = ProcessingCallbacks()  # the hooks extensions use; the interrupt test adds one
    assert ctx.models.device.type == "cuda"
    return ctx


def test_the_app_generates_on_the_gpu_in_fp16(gpu_ctx):
    result = generation.submit(gpu_ctx, GenerationRequest("txt2img", {
        "prompt": "a red circle", "steps": 4, "width": 64, "height": 64, "seed": 3, "sampler_name": "DPM++ 2M"}))
    assert gpu_ctx.models.current.model.alphas_cumprod.device.type == "cuda"
    assert next(gpu_ctx.models.current.model.model.parameters()).dtype == torch.float16
    pixels = np.asarray(result.images[0])
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0


def test_interrupt_stops_a_gpu_job_within_a_step(gpu_ctx):
    job = gpu_ctx.jobs.new_job("txt2img")
    seen = []

    def interrupt_at_step_2(params):
        seen.append(params.sampling_step)
        if params.sampling_step == 2:
            job.interrupt()
    gpu_ctx.services.callbacks.cfg.on_cfg_denoiser.append(interrupt_at_step_2)
    try:
        result = generation.submit(gpu_ctx, GenerationRequest("txt2img", {
            "prompt": "x", "steps": 20, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}), job)
    finally:
        gpu_ctx.services.callbacks.cfg.on_cfg_denoiser.remove(interrupt_at_step_2)
    assert result.interrupted and max(seen) <= 3 and len(result.images) == 1
