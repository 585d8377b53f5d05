"""Device and dtype policy (A1111's flags) and the OOM message."""
import argparse

import pytest
import torch

from modules import devices


def test_cpu_is_fp32_whatever_the_flags():
    policy = devices.dtype_policy("cpu")
    assert (policy.dtype_unet, policy.dtype_vae) == (torch.float32, torch.float32)


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
