"""RetinaFace (Deng et al. 2019, "RetinaFace: Single-stage Dense Face Localisation in the Wild") with a
ResNet-50 backbone: the face detector A1111 uses (through facexlib) before GFPGAN / CodeFormer.

Attribute names are the keys of facexlib's `detection_Resnet50_Final.pth` (`body.layer2...`, `fpn.*`,
`ssh1.*`, `ClassHead.0.conv1x1.*` ...), so that file loads with strict=True. Input: BGR pixels in
0..255 minus the mean (104, 117, 123), as it was trained (Caffe-style, no scaling).

    net = RetinaFace(); net.load_state_dict(weights)
    faces = detect(net, image_rgb_uint8, conf_threshold=0.97)   # [Face(box, score, landmarks)]
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

MIN_SIZES = ((16, 32), (64, 128), (256, 512))  # anchor sides per pyramid level, in input pixels
STEPS = (8, 16, 32)                            # strides of the three levels
VARIANCE = (0.1, 0.2)                          # SSD box encoding: centre and log-size variances
MEAN_BGR = (104.0, 117.0, 123.0)


def conv_bn(cin: int, cout: int, kernel: int = 3, leaky: float | None = 0.0) -> nn.Sequential:
    """conv (no bias) -> batch norm [-> leaky relu]: keys `.0.weight`, `.1.*` as in the weights file."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky, inplace=True))
    return nn.Sequential(*layers)


class FPN(nn.Module):
    """Feature pyramid (Lin et al. 2017): 1x1 lateral convs, top-down nearest upsampling, 3x3 merges."""

    def __init__(self, in_channels: tuple[int, ...], out: int):
        super().__init__()
        self.output1, self.output2, self.output3 = (conv_bn(c, out, 1) for c in in_channels)
        self.merge1, self.merge2 = conv_bn(out, out), conv_bn(out, out)

    def forward(self, c3, c4, c5):
        p3, p4, p5 = self.output1(c3), self.output2(c4), self.output3(c5)
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return p3, p4, p5


class SSH(nn.Module):
    """Context module (Najibi et al. 2017): 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated."""

    def __init__(self, channels: int):
        super().__init__()
        half, quarter = channels // 2, channels // 4
        self.conv3X3 = conv_bn(channels, half, leaky=None)
        self.conv5X5_1 = conv_bn(channels, quarter)
        self.conv5X5_2 = conv_bn(quarter, quarter, leaky=None)
        self.conv7X7_2 = conv_bn(quarter, quarter)
        self.conv7x7_3 = conv_bn(quarter, quarter, leaky=None)

    def forward(self, x):
        b5 = self.conv5X5_1(x)
        b7 = self.conv7X7_2(b5)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(b5), self.conv7x7_3(b7)], dim=1))


class Head(nn.Module):
    """1x1 conv predicting `per_anchor` numbers for each of 2 anchors per cell -> [B, cells*2, per_anchor]."""

    def __init__(self, channels: int, per_anchor: int, anchors: int = 2):
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(channels, anchors * per_anchor, 1)

    def forward(self, x):
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.per_anchor)


class Backbone(nn.Module):
    """torchvision's ResNet-50 up to layer4 (what facexlib's IntermediateLayerGetter keeps)."""

    def __init__(self):
        super().__init__()
        resnet = torchvision.models.resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(self.layer1(x))
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)


class RetinaFace(nn.Module):
    def __init__(self, channels: int = 256):
        super().__init__()
        self.body = Backbone()
        self.fpn = FPN((512, 1024, 2048), channels)
        self.ssh1, self.ssh2, self.ssh3 = SSH(channels), SSH(channels), SSH(channels)
        self.ClassHead = nn.ModuleList(Head(channels, 2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(Head(channels, 4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(Head(channels, 10) for _ in STEPS)

    def forward(self, x):
        """x: [B, 3, H, W] BGR minus MEAN_BGR -> (box offsets [B, N, 4], face probability [B, N],
        landmark offsets [B, N, 10]) for the N anchors of `priors(H, W)`."""
        p3, p4, p5 = self.fpn(*self.body(x))
        features = (self.ssh1(p3), self.ssh2(p4), self.ssh3(p5))
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, features, strict=True)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, features, strict=True)], dim=1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, features, strict=True)], dim=1)
        return loc, conf.softmax(dim=-1)[..., 1], landmarks


def priors(height: int, width: int) -> torch.Tensor:
    """Anchor boxes [N, 4] (cx, cy, w, h) relative to the image, in the heads' output order: level by
    level, row by row, two sizes per cell."""
    rows = []
    for step, sizes in zip(STEPS, MIN_SIZES, strict=True):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid((torch.arange(fh) + 0.5) * step / height, (torch.arange(fw) + 0.5) * step / width,
                                indexing="ij")
        per_size = [torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], dim=-1)
                    for s in sizes]
        rows.append(torch.stack(per_size, dim=2).reshape(-1, 4))
    return torch.cat(rows)


def decode_boxes(loc: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """SSD decoding (Liu et al. 2016): centre offset scaled by the anchor size, log size -> (x1, y1, x2, y2)."""
    centre = anchors[:, :2] + loc[:, :2] * VARIANCE[0] * anchors[:, 2:]
    size = anchors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCE[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def decode_landmarks(pre: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """5 points (eyes, nose, mouth corners) as offsets from the anchor centre -> [N, 5, 2]."""
    points = pre.reshape(-1, 5, 2)
    return anchors[:, None, :2] + points * VARIANCE[0] * anchors[:, None, 2:]


@dataclass
class Face:
    box: np.ndarray        # x1, y1, x2, y2 in image pixels
    score: float
    landmarks: np.ndarray  # [5, 2]: left eye, right eye, nose, left and right mouth corner


def detect(net: RetinaFace, image: np.ndarray, conf_threshold: float = 0.97, nms_threshold: float = 0.4,
           resize: int | None = 640) -> list[Face]:
    """Faces in an RGB uint8 image [H, W, 3], best first. The image is first scaled so its short side
    is `resize` pixels (facexlib's get_face_landmarks_5(resize=640) as A1111 calls it)."""
    h, w = image.shape[:2]
    scale = min(h, w) / resize if resize else 1.0
    x = torch.from_numpy(np.ascontiguousarray(image[..., ::-1], dtype=np.float32)).permute(2, 0, 1)[None]
    if scale != 1.0:
        x = F.interpolate(x, size=(max(1, int(h / scale)), max(1, int(w / scale))), mode="bilinear",
                          align_corners=False, antialias=scale > 1)
    param = next(net.parameters())
    x = (x - torch.tensor(MEAN_BGR).view(1, 3, 1, 1)).to(param.device, param.dtype)
    with torch.inference_mode():
        loc, conf, landmarks = net(x)
    sh, sw = x.shape[-2:]
    anchors = priors(sh, sw).to(loc.device)
    size = torch.tensor([sw, sh], device=loc.device, dtype=torch.float32) * scale
    boxes = decode_boxes(loc[0].float(), anchors) * size.repeat(2)
    points = decode_landmarks(landmarks[0].float(), anchors) * size
    scores = conf[0].float()
    keep = scores > conf_threshold
    boxes, points, scores = boxes[keep], points[keep], scores[keep]
    kept = torchvision.ops.nms(boxes, scores, nms_threshold)  # sorted by score, best first
    return [Face(boxes[i].cpu().numpy(), float(scores[i]), points[i].cpu().numpy()) for i in kept.tolist()]
