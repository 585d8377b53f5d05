"""Device and dtype policy (A1111's flags) and the OOM message."""
import argparse

import pytest
import torch

from modules import devices


@pytest.mark.parametrize("flags, native_bf16, unet", [
    ({}, True, torch.bfloat16),  # AMX: bf16 UNet + text encoder by default
    ({}, False, torch.float32),
    ({"no_half": True}, True, torch.float32),
    ({"precision": "full"}, True, torch.float32),
    ({"precision": "half"}, False, torch.bfloat16),  # asked for: bf16 even without AMX
    ({"no_half_vae": True}, True, torch.bfloat16),
])
def test_cpu_policy(flags, native_bf16, unet):
    policy = devices.dtype_policy("cpu", cpu_bf16=native_bf16, **flags)
    assert (policy.dtype_unet, policy.dtype_vae) == (unet, torch.float32)  # the CPU never runs fp16; VAE fp32


def test_the_start_up_line_says_the_precision():
    line = devices.describe(devices.dtype_policy("cpu", cpu_bf16=True))
    assert "bfloat16" in line and "--no-half" in line and "VAE float32" in line
    assert "--no-half" not in devices.describe(devices.dtype_policy("cpu", no_half=True))


def test_cpu_default_follows_the_probe():
    expected = torch.bfloat16 if devices.cpu_has_native_bf16() else torch.float32
    assert devices.dtype_policy("cpu").dtype_unet == expected


@pytest.mark.parametrize("flags, unet, vae", [
    ({}, torch.float16, torch.float16),
    ({"no_half_vae": True}, torch.float16, torch.float32),
    ({"no_half": True}, torch.float32, torch.float32),
    ({"precision": "full"}, torch.float32, torch.float32),
])
def test_cuda_policy(flags, unet, vae):
    policy = devices.dtype_policy("cuda", **flags)
    assert (policy.dtype_unet, policy.dtype_vae) == (unet, vae)


def test_use_cpu_all_and_args():
    assert devices.choose_device(["all"]) == torch.device("cpu")
    args = argparse.Namespace(use_cpu=["all"], device_id=None, no_half=False, no_half_vae=False, precision="autocast")
    assert devices.policy_from_args(args).device == torch.device("cpu")
    with pytest.raises(ValueError, match="precision"):
        devices.dtype_policy("cuda", precision="quarter")


def test_oom_becomes_a_clear_message():
    with pytest.raises(devices.OutOfMemory, match="out of GPU memory while loading x.safetensors"):
        with devices.oom_guard("loading x.safetensors"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
