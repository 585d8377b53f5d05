"""Device and dtype policy: which device runs the model and in which precision.

Nothing here is global state: `choose_device` and `dtype_policy` return values that the caller
(launch / application context) passes on to the model manager.

A1111's rules, which we keep:
- CUDA when available, unless `--use-cpu all` (or `--use-cpu sd`); `--device-id N` picks the GPU.
- On CUDA the weights are fp16 by default; `--no-half` keeps the whole model fp32, `--no-half-vae`
  keeps only the VAE fp32, `--precision full` implies both.

`--bf16` (ours; Forge and ComfyUI have the like) runs the UNet and text encoder in bf16 instead:
on CUDA GPUs since Ampere, and on the CPU, where A1111 has only fp32. On a CPU with AMX tiles
(Intel Xeon since Sapphire Rapids) the tiles execute bf16 matmuls and convolutions natively: the
SD1.5 UNet step is ~3x faster than fp32 (README, Benchmarks); bf16 keeps fp32's exponent range, so
no NaNs as fp16 can give. On the CPU the VAE stays fp32 (it runs once per image), and without
`--bf16` everything is fp32 (fp16 on the CPU is slow and some ops lack kernels).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass(frozen=True)
class DevicePolicy:
    device: torch.device
    dtype_unet: torch.dtype  # UNet and text encoder weights
    dtype_vae: torch.dtype  # first_stage_model weights (fp32 with --no-half-vae)
    offload: str = "none"  # "med" (--medvram) / "low" (--lowvram): modules.models.offload, on a GPU only


def choose_device(use_cpu: tuple[str, ...] | list[str] = (), device_id: int | None = None) -> torch.device:
    """`use_cpu` is the list given to `--use-cpu` ("all" or "sd" move the model to the CPU)."""
    wants_cpu = any(name in ("all", "sd") for name in use_cpu or ())
    if wants_cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    if device_id is not None:
        if not 0 <= device_id < torch.cuda.device_count():
            raise ValueError(
                f"--device-id {device_id} does not exist: this machine has {torch.cuda.device_count()} "
                "CUDA device(s), numbered from 0")
        return torch.device("cuda", device_id)
    return torch.device("cuda")


def cpu_has_native_bf16() -> bool:
    """AMX tiles and oneDNN bf16 kernels: bf16 matmuls and convolutions run natively on this CPU."""
    try:  # private torch probes; an older or other build without them means "no"
        return bool(torch.cpu._is_amx_tile_supported() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def dtype_policy(device: torch.device | str, no_half: bool = False, no_half_vae: bool = False,
                 precision: str = "autocast", bf16: bool = False) -> DevicePolicy:
    device = torch.device(device)
    if precision not in ("autocast", "half", "full"):
        raise ValueError(f"--precision must be 'full', 'half' or 'autocast', not {precision!r}")
    full = precision == "full" or no_half
    if device.type == "cpu":
        return DevicePolicy(device, torch.bfloat16 if bf16 and not full else torch.float32, torch.float32)
    half = torch.bfloat16 if bf16 else torch.float16
    dtype_unet = torch.float32 if full else half
    dtype_vae = torch.float32 if (full or no_half_vae) else half
    return DevicePolicy(device, dtype_unet, dtype_vae)


def describe(policy: DevicePolicy) -> str:
    """One line for the start-up log: where the model runs, in which precision, and how to change it."""
    def name(dt) -> str:
        return str(dt).removeprefix("torch.")

    line = f"model on {policy.device}: UNet and text encoder {name(policy.dtype_unet)}, VAE {name(policy.dtype_vae)}"
    if policy.offload != "none":
        line += f" (--{policy.offload}vram: only the running part on the GPU)"
    if policy.device.type == "cpu" and policy.dtype_unet == torch.float32 and cpu_has_native_bf16():
        line += " (this CPU runs bf16 natively: start with --bf16 for ~3x faster sampling)"
    return line


def policy_from_args(args) -> DevicePolicy:
    """Build the policy from an argparse namespace with A1111's flag names (missing ones = default)."""
    device = choose_device(getattr(args, "use_cpu", None) or (), getattr(args, "device_id", None))
    policy = dtype_policy(device, no_half=bool(getattr(args, "no_half", False)),
                          no_half_vae=bool(getattr(args, "no_half_vae", False)),
                          precision=getattr(args, "precision", None) or "autocast",
                          bf16=bool(getattr(args, "bf16", False)))
    offload = "low" if getattr(args, "lowvram", False) else "med" if getattr(args, "medvram", False) else "none"
    if device.type == "cuda" and offload != "none":  # on the CPU everything already is in the one memory
        policy = dataclasses.replace(policy, offload=offload)
    return policy


def free_memory(device: torch.device | str | None = None) -> None:
    """Return freed tensors to the system: Python's gc first (cycles keep modules alive), then
    CUDA's caching allocator, which otherwise keeps the memory reserved for this process."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


class OutOfMemory(RuntimeError):
    """A torch OOM turned into a message a user can act on."""


@contextlib.contextmanager
def oom_guard(what: str) -> Iterator[None]:
    """`with oom_guard("loading v1-5.safetensors"):` turns torch's OOM into a clear OutOfMemory."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        free_memory()
        raise OutOfMemory(
            f"out of GPU memory while {what}. Try a smaller image or batch size, unload other "
            "models (keep fewer checkpoints loaded), or start with --use-cpu all. "
            f"({str(e).splitlines()[0] if str(e) else 'torch.OutOfMemoryError'})") from e
    except MemoryError as e:
        raise OutOfMemory(f"out of system memory (RAM) while {what}: close other programs or "
                          "use a smaller model/image.") from e


def __getattr__(name: str):
    """A1111's names for extensions (device, dtype, torch_gc, autocast...): see
    modules/plugins/compat/devices.py; the engine never uses them."""
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.plugins.compat import devices as a1111
    return a1111.attribute(name)
