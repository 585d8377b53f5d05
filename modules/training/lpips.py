"""LPIPS perceptual distance (Zhang et al. 2018) on VGG16 features, when the weights are on disk.

The VGG16 weights cannot be downloaded at run time, so `load_lpips(path)` returns None (and the
caller logs that the perceptual term is skipped) when no weights file exists. The file is
torchvision's `vgg16` state_dict (`vgg16-397923af.pth`); an optional `lin` state_dict from the
LPIPS project (`vgg.pth`: lin0..lin4) weights the five feature distances, otherwise they count equally.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

_SLICES = (4, 9, 16, 23, 30)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16.features
_CHANNELS = (64, 128, 256, 512, 512)


class LPIPS(nn.Module):
    def __init__(self, features: nn.Sequential, lin_weights: list[torch.Tensor] | None = None):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        lin = lin_weights or [torch.ones(1, c, 1, 1) / c for c in _CHANNELS]
        for i, w in enumerate(lin):
            self.register_buffer(f"lin{i}", w.reshape(1, -1, 1, 1).float())

    def _feats(self, x):
        h, out, start = (x - self.shift) / self.scale, [], 0
        for end in _SLICES:
            h = self.features[start:end](h)
            out.append(h)
            start = end
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y in [-1, 1], [B, 3, H, W] -> distance per sample [B, 1, 1, 1]."""
        total = 0
        for i, (fx, fy) in enumerate(zip(self._feats(x), self._feats(y), strict=True)):
            fx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
            fy = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
            total = total + ((fx - fy) ** 2 * getattr(self, f"lin{i}")).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        return total


def load_lpips(vgg_path: str | Path | None, lin_path: str | Path | None = None) -> LPIPS | None:
    """LPIPS from a torchvision vgg16 weights file, or None when the file is absent."""
    if vgg_path is None or not Path(vgg_path).is_file():
        return None
    from torchvision.models import vgg16

    vgg = vgg16(weights=None)
    vgg.load_state_dict(torch.load(vgg_path, map_location="cpu", weights_only=True))
    lin = None
    if lin_path is not None and Path(lin_path).is_file():
        sd = torch.load(lin_path, map_location="cpu", weights_only=True)
        lin = [sd[f"lin{i}.model.1.weight"] for i in range(5)]
    return LPIPS(vgg.features[:30], lin)
