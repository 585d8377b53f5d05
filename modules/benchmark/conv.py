"""Convolution kernels on the CPU: oneDNN next to im2col + GEMM for every convolution of the UNet.

    python -m modules.benchmark conv [--size 64] [--batch 2] [--dtype fp32|bf16] [--config v1-inference]

Collects the (input, weight, stride) shapes of one UNet call at the given latent size (a meta-device
model: nothing is allocated), then times each convolution through both kernels on random data and
prints the two times, the faster one, and the one modules.ldm.conv.gemm_pays picks. The totals weigh
each shape by how often the UNet calls it. Use it to check the thresholds of modules/ldm/conv.py on
another CPU.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from modules.ldm import conv


def _time_ms(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat * 1000


def unet_conv_shapes(config: str, size: int, batch: int) -> dict:
    """{(input shape, weight shape, stride, padding): (a layer, calls)} for one UNet call on
    [batch, C, size, size] latents; layers of the same shapes are one case."""
    from modules.models.loader import build_model

    unet = build_model(config, device="meta").model.diffusion_model
    cases: dict = {}

    def count(layer, args, out):
        key = (tuple(args[0].shape), tuple(layer.weight.shape), layer.stride, layer.padding)
        first, calls = cases.get(key, (layer, 0))
        cases[key] = (first, calls + 1)

    for layer in unet.modules():
        if isinstance(layer, torch.nn.Conv2d):
            layer.register_forward_hook(count)
    ctx = unet.config.context_dim
    with torch.no_grad():
        unet(torch.zeros(batch, unet.config.in_channels, size, size, device="meta"),
             torch.zeros(batch, device="meta"), torch.zeros(batch, 77, ctx, device="meta"))
    return cases


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m modules.benchmark conv")
    ap.add_argument("--size", type=int, default=64, help="latent size (64 = a 512x512 image)")
    ap.add_argument("--batch", type=int, default=2, help="UNet batch (2 = one image with CFG)")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--config", default="v1-inference")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"UNet {args.config}, latents {args.batch}x{args.size}x{args.size}, {args.dtype}, "
          f"torch threads {torch.get_num_threads()}; ms per call")
    print(f"{'input':>22} {'weight':>22} {'stride':>6} {'calls':>5} {'oneDNN':>8} {'GEMM':>8} "
          f"{'faster':>7} {'picked':>7}")
    totals = {"oneDNN": 0.0, "GEMM": 0.0, "picked": 0.0, "best": 0.0}
    with torch.no_grad():
        for (shape, wshape, stride, padding), (layer, calls) in sorted(
                unet_conv_shapes(args.config, args.size, args.batch).items(), key=lambda kv: -kv[0][0][-1]):
            x = torch.randn(shape, dtype=dtype)
            w = torch.randn(wshape, dtype=dtype) * 0.02
            b = torch.zeros(wshape[0], dtype=dtype)
            # the lambdas run at once, inside this iteration: binding the loop variables is not needed
            onednn = _time_ms(lambda: F.conv2d(x, w, b, stride, padding), args.repeat)  # noqa: B023
            gemm = _time_ms(lambda: torch._C._nn.thnn_conv2d(x, w, wshape[2:], b, stride, padding),  # noqa: B023
                            args.repeat)
            picked = "GEMM" if conv.gemm_pays(layer, x) else "oneDNN"
            faster = "GEMM" if gemm < onednn else "oneDNN"
            totals["oneDNN"] += onednn * calls
            totals["GEMM"] += gemm * calls
            totals["picked"] += (gemm if picked == "GEMM" else onednn) * calls
            totals["best"] += min(gemm, onednn) * calls
            print(f"{str(list(shape)):>22} {str(list(wshape)):>22} {stride[0]:>6} {calls:>5} {onednn:>8.1f} "
                  f"{gemm:>8.1f} {faster:>7} {picked:>7}", flush=True)
    print("total ms per UNet call: " + ", ".join(f"{k} {v:.0f}" for k, v in totals.items()))
    return 0
