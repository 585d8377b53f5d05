"""Device and dtype policy (A1111's flags) and the OOM message."""
import argparse

import pytest
import torch

from modules import devices


@pytest.mark.parametrize("flags, unet", [
    ({}, torch.float32),  # as A1111: fp32 on the CPU unless asked
    ({"bf16": True}, torch.bfloat16),
    ({"bf16": True, "no_half": True}, torch.float32),
    ({"bf16": True, "precision": "full"}, torch.float32),
    ({"precision": "half"}, torch.float32),  # fp16 never runs on the CPU
    ({"bf16": True, "no_half_vae": True}, torch.bfloat16),
])
def test_cpu_policy(flags, unet):
    policy = devices.dtype_policy("cpu", **flags)
    assert (policy.dtype_unet, policy.dtype_vae) == (unet, torch.float32)  # the VAE stays fp32 on the CPU


def test_the_start_up_line_says_the_precision():
    line = devices.describe(devices.dtype_policy("cpu", bf16=True))
    assert "UNet and text encoder bfloat16, VAE float32" in line
    plain = devices.describe(devices.dtype_policy("cpu"))
    assert "float32" in plain and (("--bf16" in plain) == devices.cpu_has_native_bf16())


@pytest.mark.parametrize("flags, unet, vae", [
    ({}, torch.float16, torch.float16),
    ({"no_half_vae": True}, torch.float16, torch.float32),
    ({"no_half": True}, torch.float32, torch.float32),
    ({"precision": "full"}, torch.float32, torch.float32),
    ({"bf16": True}, torch.bfloat16, torch.bfloat16),
    ({"bf16": True, "no_half_vae": True}, torch.bfloat16, torch.float32),
])
def test_cuda_policy(flags, unet, vae):
    policy = devices.dtype_policy("cuda", **flags)
    assert (policy.dtype_unet, policy.dtype_vae) == (unet, vae)


def test_use_cpu_all_and_args():
    assert devices.choose_device(["all"]) == torch.device("cpu")
    args = argparse.Namespace(use_cpu=["all"], device_id=None, no_half=False, no_half_vae=False, precision="autocast")
    assert devices.policy_from_args(args).device == torch.device("cpu")
    args.bf16 = True
    assert devices.policy_from_args(args).dtype_unet == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        devices.dtype_policy("cuda", precision="quarter")


def test_oom_becomes_a_clear_message():
    with pytest.raises(devices.OutOfMemory, match="out of GPU memory while loading x.safetensors"):
        with devices.oom_guard("loading x.safetensors"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
