"""The patch-GAN discriminator of pix2pix (Isola et al. 2017), as the LDM autoencoder recipe uses it.

Each output logit judges one overlapping patch of the input as real or reconstructed.
"""
from __future__ import annotations

from torch import nn


class NLayerDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last block keeps the resolution (70x70 patches)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x):
        return self.main(x)


def _init_weights(m: nn.Module) -> None:
    # pix2pix init: N(0, 0.02) convs, N(1, 0.02) norm scales
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
