"""NVIDIA's CUDA `torch.randn`, reproduced on any device ("NV" RNG source).

PyTorch on CUDA draws normals with curand's Philox4x32-10: thread `i` initialises
`curand_init(seed, subsequence=i, offset)`, i.e. the Philox counter is (offset, 0, i, 0) and the key is
the seed split into two 32-bit words; the first two 32-bit outputs become one normal through
Box-Muller (`sqrt(-2 ln u) * sin(2 pi v)`). For tensors smaller than the CUDA grid (every SD latent)
each element is one thread, and each `randn` call advances the offset by one counter block.
Computing the same thing with numpy gives bit-for-bit (to float rounding) the noise a CUDA GPU makes
for a seed, on a CPU, Mac or AMD card.

Philox: Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3" (SC'11), Random123.
"""
from __future__ import annotations

import numpy as np

PHILOX_M4x32 = (0xD2511F53, 0xCD9E8D57)  # round multipliers
PHILOX_W32 = (0x9E3779B9, 0xBB67AE85)  # Weyl key bumps (golden ratio, sqrt(3) - 1)

# curand's float constants CURAND_2POW32_INV (2.3283064e-10f) and CURAND_2POW32_INV_2PI (the product
# of two floats, rounded to float); using the same float32 values keeps the last bits equal.
TWO_POW32_INV = float(np.float32(2.3283064e-10))
TWO_POW32_INV_2PI = float(np.float32(np.float32(2.3283064e-10) * np.float32(6.2831855)))


def _mulhilo(a: int, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    product = np.uint64(a) * b.astype(np.uint64)
    return (product >> np.uint64(32)).astype(np.uint32), product.astype(np.uint32)


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox4x32-R on columns: counter (4, n) and key (2, n) uint32 -> (4, n) uint32."""
    c0, c1, c2, c3 = (np.asarray(w, dtype=np.uint32) for w in counter)
    k0, k1 = (np.array(w, dtype=np.uint32) for w in key)
    for r in range(rounds):
        if r:
            # uint32 arithmetic wraps modulo 2**32, as the spec requires
            k0 = (k0.astype(np.uint64) + PHILOX_W32[0]).astype(np.uint32)
            k1 = (k1.astype(np.uint64) + PHILOX_W32[1]).astype(np.uint32)
        hi0, lo0 = _mulhilo(PHILOX_M4x32[0], c0)
        hi1, lo1 = _mulhilo(PHILOX_M4x32[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return np.stack([c0, c1, c2, c3])


def box_muller(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """curand's `_curand_box_muller`, first output: two uint32 -> one standard normal (float32)."""
    u = x * TWO_POW32_INV + TWO_POW32_INV / 2
    v = y * TWO_POW32_INV_2PI + TWO_POW32_INV_2PI / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


class Generator:
    """Stateful like torch.Generator: each `randn` call uses the next offset."""

    def __init__(self, seed: int, offset: int = 0):
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.offset = int(offset)

    def randn(self, shape) -> np.ndarray:
        n = int(np.prod(shape))
        if n >= 2**32:
            raise ValueError(f"the NV generator makes at most 2**32 numbers per call, got {n}")
        counter = np.zeros((4, n), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(n, dtype=np.uint32)  # the curand subsequence = element index
        key = np.empty((2, n), dtype=np.uint32)
        key[0] = self.seed & 0xFFFFFFFF
        key[1] = self.seed >> 32
        self.offset += 1
        out = philox4x32(counter, key)
        return box_muller(out[0], out[1]).reshape(shape)
