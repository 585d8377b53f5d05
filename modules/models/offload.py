"""`--medvram` / `--lowvram`: only the part of the model that is running sits on the GPU.

A1111's idea (lowvram.py), done with torch's forward pre-hooks rather than by replacing methods:
the model's networks are "parts" that take turns on the device. Before any module of a part runs,
the part that was on the device goes back to the CPU and this one comes in; tensors handed to it on
the CPU follow it. Everything that is not a part (schedule buffers, small glue modules) stays on
the device, so samplers see the model where they expect it (`alphas_cumprod.device`).

- medvram: each network is a part: the text encoder(s), the VAE, the denoiser (UNet or MMDiT),
  a depth estimator. Peak memory is the largest network instead of their sum.
- lowvram: the denoiser is split further into its blocks (a UNet's input_blocks.N, middle_block,
  output_blocks.N; an MMDiT's joint_blocks.N): peak memory is about one block, at the cost of
  moving every block in and out at every step.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

MODES = ("none", "med", "low")
BLOCK_LISTS = ("input_blocks", "output_blocks", "joint_blocks")  # split by --lowvram, one part per block
SINGLE_BLOCKS = ("middle_block",)


def _has_weights(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _blocks(network: nn.Module) -> list[nn.Module] | None:
    """The blocks of a denoiser that --lowvram moves one at a time; None if it has none."""
    found: list[nn.Module] = []
    for module in network.modules():
        for name in BLOCK_LISTS:
            found += list(getattr(module, name, None) or [])
        for name in SINGLE_BLOCKS:
            block = getattr(module, name, None)
            if isinstance(block, nn.Module):
                found.append(block)
        if found:
            return found
    return None


def split_parts(model: nn.Module, mode: str) -> list[nn.Module]:
    """The modules that take turns on the device: each direct network of the model (a child
    module with weights; a wrapper such as LatentDiffusion's `model` is looked through), and with
    "low" the denoiser's blocks instead of the whole denoiser."""
    if mode not in MODES:
        raise ValueError(f"offload mode must be one of {', '.join(MODES)}, not {mode!r}")
    parts: list[nn.Module] = []
    for child in model.children():
        if not _has_weights(child):
            continue
        blocks = _blocks(child) if mode == "low" else None
        parts += blocks if blocks else [child]
    return parts


class Offloader:
    """Moves parts between `storage` (the CPU) and `device` as they are used; one at a time."""

    def __init__(self, device: torch.device | str, storage: torch.device | str = "cpu"):
        self.device, self.storage = torch.device(device), torch.device(storage)
        self.resident: nn.Module | None = None
        self.loads = 0  # how many times a part was brought in (for tests and the log)
        self._handles: list[Any] = []

    def install(self, model: nn.Module, mode: str) -> "Offloader":
        parts = split_parts(model, mode)
        model.execution_device = self.device  # where sampling runs (models without schedule buffers: SD3)
        in_parts = {id(m) for part in parts for m in part.modules()}
        with torch.no_grad():
            for module in model.modules():  # the rest lives on the device
                if id(module) in in_parts:
                    continue
                for tensor in list(module._parameters.values()) + list(module._buffers.values()):
                    if tensor is not None:
                        tensor.data = tensor.data.to(self.device)
            for part in parts:
                part.to(self.storage)
                for module in part.modules():
                    self._handles.append(module.register_forward_pre_hook(
                        lambda _m, args, kwargs, part=part: self._enter(part, args, kwargs), with_kwargs=True))
        return self

    def _enter(self, part: nn.Module, args: tuple, kwargs: dict):
        if self.resident is not part:
            if self.resident is not None:
                self.resident.to(self.storage)
            part.to(self.device)
            self.resident = part
            self.loads += 1
        return tuple(self._follow(a) for a in args), {k: self._follow(v) for k, v in kwargs.items()}

    def _follow(self, value):
        """A tensor made on the CPU for a part that was still there comes along to the device."""
        if torch.is_tensor(value) and value.device != self.device:
            return value.to(self.device)
        return value

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
