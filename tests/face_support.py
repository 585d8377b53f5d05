"""A RetinaFace whose heads are set by hand (random backbone): it reports exactly one face per
largest-anchor cell, with landmarks at known offsets, so the detection -> crop -> restore -> paste
path runs on known geometry without trained weights."""
from __future__ import annotations

import torch

from modules.face_restoration import retinaface

# landmark offsets in units of 0.1 x the anchor side (RetinaFace's variance): eyes, nose, mouth corners
OFFSETS = ((-0.25, -0.2), (0.25, -0.2), (0.0, 0.05), (-0.2, 0.3), (0.2, 0.3))


def rigged_detector(faces: bool = True, seed: int = 0) -> retinaface.RetinaFace:
    torch.manual_seed(seed)
    net = retinaface.RetinaFace().eval()
    with torch.no_grad():
        for level, (cls, box, mark) in enumerate(zip(net.ClassHead, net.BboxHead, net.LandmarkHead, strict=True)):
            for head in (cls, box, mark):
                head.conv1x1.weight.zero_()
                head.conv1x1.bias.zero_()
            face = faces and level == len(retinaface.STEPS) - 1
            # channels: anchor 0 (background, face), anchor 1 (background, face); only the 512 px anchor is a face
            cls.conv1x1.bias.copy_(torch.tensor([9.0, -9.0, -9.0 if face else 9.0, 9.0 if face else -9.0]))
            mark.conv1x1.bias.copy_(torch.tensor([v for point in OFFSETS for v in point] * 2))
    return net
