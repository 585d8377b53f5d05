"""Tiny random-weight upscaler networks of several architectures, written as users have them
(.pth state dicts, or .safetensors), for the spandrel tests. Built with spandrel's own classes at
small sizes; spandrel must then detect the architecture and sizes back from the shapes alone."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def tiny_networks() -> dict:
    """name -> (network, scale, spandrel's architecture name)."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    return {
        "4x-tiny-esrgan": (ESRGAN(num_filters=8, num_blocks=1, scale=4), 4, "ESRGAN"),
        "2x-tiny-compact": (Compact(num_feat=8, num_conv=2, upscale=2), 2, "RealESRGAN Compact"),
        "tiny-swinir-x2": (SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                                  upsampler="pixelshuffle", mlp_ratio=2.0), 2, "SwinIR"),
        "tiny-dat-x2": (DAT(img_size=16, embed_dim=16, depth=[1], num_heads=[2], split_size=[2, 4], upscale=2,
                            expansion_factor=2.0), 2, "DAT"),
        "tiny-hat-x2": (HAT(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                            mlp_ratio=2.0, compress_ratio=3, squeeze_factor=3), 2, "HAT"),
    }


def save_network(net: torch.nn.Module, path: Path, wrap: str | None = None) -> Path:
    """.safetensors: the flat dict; .pth: torch.save of the dict, optionally under a key such as
    Real-ESRGAN's `params_ema`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path
