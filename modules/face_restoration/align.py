"""Face crops for GFPGAN / CodeFormer and pasting the restored faces back (facexlib's
FaceRestoreHelper steps as A1111 uses them: 5-point FFHQ template, 512 px crops, soft-edged paste).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

FACE_SIZE = 512
# where the eyes, nose and mouth corners of an FFHQ-aligned 512 x 512 face lie (x, y)
FFHQ_TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                          [201.26117, 371.41043], [313.08905, 371.15118]])
BORDER_RGB = (132, 133, 135)  # facexlib's grey fill outside the image


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the rotation + uniform scale + translation that maps src points onto dst
    with the least squared error (Umeyama 1991, no reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / s.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def invert(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0, 0, 1]])
    return np.linalg.inv(full)[:2]


def _warp(image: Image.Image, matrix: np.ndarray, size: tuple[int, int], fill) -> Image.Image:
    """Apply matrix (source -> output coordinates); PIL wants the output -> source mapping."""
    inverse = invert(matrix)
    return image.transform(size, Image.AFFINE, tuple(inverse.reshape(-1)), resample=Image.BILINEAR, fillcolor=fill)


def crop_face(image: Image.Image, landmarks: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """The 512 x 512 aligned crop of one face and the matrix image -> crop."""
    matrix = similarity_transform(landmarks, FFHQ_TEMPLATE * (FACE_SIZE / 512.0))
    return _warp(image.convert("RGB"), matrix, (FACE_SIZE, FACE_SIZE), BORDER_RGB), matrix


def paste_face(image: Image.Image, face: Image.Image, matrix: np.ndarray) -> Image.Image:
    """Put a restored crop back where it came from, blended through a mask that is eroded and
    blurred by about a twentieth of the face's width, so no edge of the crop shows."""
    size = image.size
    back = invert(matrix)
    restored = np.asarray(_warp(face.convert("RGB"), back, size, (0, 0, 0)), np.float32)
    mask = _warp(Image.new("L", face.size, 255), back, size, 0).filter(ImageFilter.MinFilter(3))
    area = np.count_nonzero(np.asarray(mask) > 127)
    edge = int(area ** 0.5) // 20
    if edge > 0:
        mask = mask.filter(ImageFilter.MinFilter(2 * edge + 1)).filter(ImageFilter.GaussianBlur(max(edge, 1) * 0.5))
    alpha = np.asarray(mask, np.float32)[..., None] / 255.0
    base = np.asarray(image.convert("RGB"), np.float32)
    out = alpha * restored + (1 - alpha) * base
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
