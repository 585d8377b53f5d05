"""A Conv2d that picks the faster CPU kernel for small feature maps.

PyTorch runs a CPU convolution through oneDNN, which reorders the weight into its blocked layout on
every call (nothing caches it). On the UNet's low-resolution levels (8x8 and 16x16 latents, 1280
channels, weights of 15-30 M values) that reorder costs more than the convolution: measured on this
project's CPU (Xeon, AVX-512/AMX, one or two threads), a 1280->1280 3x3 convolution on a [2, 1280, 8, 8]
map takes 46 ms through oneDNN and 24-26 ms through im2col + GEMM (`thnn_conv2d`), which reads the
weight as it is (in bf16: 10.2 vs 5.3 ms). For large maps oneDNN is the faster one (a [2, 320, 64, 64] map:
78 vs 118 ms), so the choice is made per call from the output size of one image (`gemm_pays`): not
from the batch, so that an image generated in a batch is bit-identical to the same seed generated alone
(each kernel is batch-invariant; im2col + GEMM runs image by image). Both kernels compute the same
convolution (fp32 results differ in rounding only, ~1e-6). The price: for CFG batches of 8 and more
the GEMM kernel is slower on these maps (1280 channels at 8x8, 8 images: 127 vs 106 ms), a few percent
of a UNet step.

Keys and parameters are nn.Conv2d's, so checkpoints load unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

_thnn_conv2d = getattr(torch._C._nn, "thnn_conv2d", None)  # im2col + GEMM (aten::_slow_conv2d_forward)

# Thresholds measured with `python -m modules.benchmark conv` (--size 32 and 64, batch 2, fp32 and bf16,
# one and two threads): an output map of <= 64 positions (8x8) per image favours GEMM; up to 256 (16x16)
# it does when the weight is large (>= 12 M values: 1280x1280x3x3 and wider), else oneDNN wins or ties.
SMALL_OUTPUT = 64
MEDIUM_OUTPUT = 256
LARGE_WEIGHT = 12_000_000


def gemm_pays(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """True when im2col + GEMM is the faster kernel for this convolution of `x` on the CPU."""
    if _thnn_conv2d is None or x.device.type != "cpu" or x.dim() != 4:
        return False
    if conv.groups != 1 or conv.padding_mode != "zeros" or conv.dilation != (1, 1) or isinstance(conv.padding, str):
        return False
    h = (x.shape[-2] + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    w = (x.shape[-1] + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
    positions = h * w  # per image: the choice must not depend on the batch (see the module docstring)
    return positions <= SMALL_OUTPUT or (positions <= MEDIUM_OUTPUT and conv.weight.numel() >= LARGE_WEIGHT)


class Conv2d(nn.Conv2d):
    """nn.Conv2d whose CPU forward uses im2col + GEMM where that is faster (see `gemm_pays`)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        if gemm_pays(self, input):
            return _thnn_conv2d(input.contiguous(), weight.contiguous(), self.kernel_size, bias, self.stride,
                                self.padding)
        return super()._conv_forward(input, weight, bias)
