"""A1111's `modules.devices` names that modules/devices.py (the engine's device policy) does not
define itself: the application's device and dtypes (A1111 globals, read from the model manager of
the current extension scope) and A1111's helper functions."""
from __future__ import annotations

import contextlib

import torch

from modules.plugins.compat import models

cpu = torch.device("cpu")


class NansException(Exception):
    """A1111's exception for NaNs in a tensor (test_for_nans)."""


def torch_gc() -> None:
    from modules.devices import free_memory
    free_memory()


def get_optimal_device():
    return models.device()


def get_optimal_device_name() -> str:
    return str(models.device())


def get_device_for(task: str):
    """A1111 lets some tasks run on the CPU by flag; here every task runs on the one device."""
    return models.device()


def has_mps() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def autocast(disable: bool = False):
    """A1111: torch.autocast on a GPU in half precision, else nothing."""
    device, dtype = models.device(), models.dtype_unet()
    if disable or device.type == "cpu" or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def without_autocast(disable: bool = False):
    device = models.device()
    if disable or device.type == "cpu" or not torch.is_autocast_enabled():
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


def cond_cast_unet(tensor):
    return tensor.to(models.dtype_unet())


def cond_cast_float(tensor):
    return tensor.float() if models.dtype_unet() != torch.float32 else tensor


def test_for_nans(x, where: str) -> None:
    if torch.isnan(x).all():
        raise NansException(f"A tensor with all NaNs was produced in {where}.")


def first_time_calculation() -> None:
    """A1111 warms up cuDNN here; nothing to do."""


def attribute(name: str):
    """The A1111 globals: device, dtype, dtype_unet, dtype_vae, dtype_inference, unet_needs_upcast."""
    if name in ("device", "device_interrogate", "device_gfpgan", "device_esrgan", "device_codeformer"):
        return models.device()
    if name in ("dtype", "dtype_unet", "dtype_inference"):
        return models.dtype_unet()
    if name == "dtype_vae":
        return models.dtype_vae()
    if name == "unet_needs_upcast":
        return False
    if name in globals() and not name.startswith("_") and name != "attribute":
        return globals()[name]
    raise AttributeError(f"module 'modules.devices' has no attribute {name!r} in this web UI "
                         "(README: Extensions, A1111's module surface)")
