"""Seeds and noise: reproducibility, variation seeds, resize-from, ENSD, and the NV (CUDA Philox) source."""
import random

import numpy as np
import pytest
import torch

from modules.sampling import rng, rng_philox

# Random123's tests/kat_vectors, the three "philox4x32 10" lines (github.com/DEShawResearch/random123):
# counter (4 words), key (2 words) -> expected output (4 words).
PHILOX_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

# torch.randn on a CUDA GPU after torch.manual_seed(0): no GPU here, so these are published outputs.
# 80 values of one (8, 10) call, then 10 values of the next call, printed by libtorch
# ("[ CUDAFloatType{8,10} ]" / "{10}") in the CUDA MODE lecture notes of ksharma (blog post "torch.compile
# is your triton learning companion", cuda-mode-lecture repository, 4-digit print). The first 12 also
# appear to 8 digits, for seed 0 / offset 0, in aagdev/mlimgsynth src/test_rng.c.
CUDA_SEED0_CALL1 = [
    -0.9247, -0.4253, -2.6438, 0.1452, -0.1209, -0.5797, -0.6229, -0.3284, -1.0745, -0.3631,
    -1.6711, 2.2655, 0.3117, -0.1842, 1.2866, 1.1820, -0.1271, 1.2169, 1.4353, 1.0605,
    -0.4941, -1.4244, -0.7244, -1.2973, 0.0697, -0.0074, 1.8969, 0.6878, -0.0779, -0.8373,
    1.3506, -0.2879, -0.5965, -0.3283, -0.9086, -0.8059, -0.7407, -0.0504, 0.5435, 1.5150,
    0.0141, 0.4532, 1.6349, 0.7124, -0.1806, 1.0252, -1.4622, -0.7554, -0.1836, 0.3824,
    0.3918, -0.0830, 0.8971, -1.1123, 0.1116, 0.4863, -0.5499, -0.3231, -0.5469, 0.9049,
    0.2837, 0.1210, 0.4730, -1.0823, -0.0334, -0.9734, 0.9559, -1.1795, -1.0064, 0.1160,
    0.6852, -0.4124, -0.6738, -0.5404, 0.6898, -1.5517, 0.3805, -0.0436, 0.3597, -0.5043,
]
CUDA_SEED0_CALL2 = [0.1808, -0.5523, 0.9238, -0.7350, 1.3800, 0.8676, 0.1297, -0.9406, 0.8109, 0.8821]
CUDA_SEED0_8_DIGITS = [-0.92466259, -0.42534414, -2.64384580, 0.14518388, -0.12086648, -0.57972562,
                       -0.62285119, -0.32838708, -1.07454228, -0.36314407, -1.67105067, 2.26550508]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox4x32_10_known_answers(counter, key, expected):
    out = rng_philox.philox4x32(np.array(counter, dtype=np.uint32)[:, None], np.array(key, dtype=np.uint32)[:, None])
    assert [int(v) for v in out[:, 0]] == list(expected)


def test_philox_is_vectorised_per_column():
    counters = np.array([c for c, _, _ in PHILOX_KAT], dtype=np.uint32).T
    keys = np.array([k for _, k, _ in PHILOX_KAT], dtype=np.uint32).T
    out = rng_philox.philox4x32(counters, keys)
    assert out.T.tolist() == [list(e) for _, _, e in PHILOX_KAT]


def test_nv_source_matches_cuda_torch_randn():
    gen = rng_philox.Generator(0)
    first = gen.randn((8, 10))
    second = gen.randn((10,))
    assert np.allclose(first.ravel(), CUDA_SEED0_CALL1, atol=6e-5)
    assert np.allclose(second, CUDA_SEED0_CALL2, atol=6e-5)
    assert np.allclose(first.ravel()[:12], CUDA_SEED0_8_DIGITS, atol=1e-6)
    assert first.dtype == np.float32 and first.shape == (8, 10)


def test_nv_through_rng_module():
    noise = rng.randn(0, (4, 2, 10), source="NV")
    assert noise.dtype == torch.float32
    assert torch.allclose(noise.flatten()[:80], torch.tensor(CUDA_SEED0_CALL1), atol=6e-5)


@pytest.mark.parametrize("source", ["CPU", "NV", "GPU"])
def test_same_seed_gives_bit_identical_noise(source):
    a = rng.ImageRNG((4, 8, 8), [1234, 1235], source=source)
    b = rng.ImageRNG((4, 8, 8), [1234, 1235], source=source)
    assert torch.equal(a.next(), b.next()) and torch.equal(a.next(), b.next())
    assert not torch.equal(rng.randn(1234, (4, 8, 8), source), rng.randn(1235, (4, 8, 8), source))


def test_cpu_source_is_torchs_cpu_generator():
    expected = torch.randn((4, 8, 8), generator=torch.Generator("cpu").manual_seed(77))
    assert torch.equal(rng.randn(77, (4, 8, 8), "CPU"), expected)


def test_image_i_of_a_batch_uses_seed_plus_i():
    seeds = rng.batch_seeds(500, 3)
    assert seeds == [500, 501, 502]
    noise = rng.ImageRNG((4, 8, 8), seeds).next()
    for i, seed in enumerate(seeds):
        assert torch.equal(noise[i], rng.randn(seed, (4, 8, 8)))


def test_seed_minus_one_is_random():
    r = random.Random(3)
    a, b = rng.fix_seed(-1, r), rng.fix_seed(-1, r)
    assert a != b and 0 <= a < 2**32 and 0 <= b < 2**32
    assert rng.fix_seed(42) == 42 and rng.fix_seed("7") == 7


def test_variation_strength_endpoints_and_middle():
    base = rng.randn(10, (4, 8, 8))
    variation = rng.randn(99, (4, 8, 8))
    at = lambda s: rng.ImageRNG((4, 8, 8), [10], subseeds=[99], subseed_strength=s).next()[0]  # noqa: E731
    assert torch.equal(at(0.0), base)
    assert torch.allclose(at(1.0), variation, atol=1e-5)
    middle = at(0.5)
    assert not torch.allclose(middle, base, atol=0.1) and not torch.allclose(middle, variation, atol=0.1)
    # slerp keeps the noise's scale (a plain average would shrink it by ~1/sqrt(2))
    assert float(middle.std()) == pytest.approx(float(base.std()), rel=0.1)


def test_slerp_of_equal_vectors_is_that_vector():
    x = torch.randn(4, 8, 8)
    assert torch.allclose(rng.slerp(0.3, x, x.clone()), x, atol=1e-6)


def test_resize_seed_from_keeps_the_centre_of_the_other_sizes_noise():
    big = rng.randn(5, (4, 12, 16))  # noise of a 128x96 image
    noise = rng.ImageRNG((4, 8, 8), [5], seed_resize_from_w=128, seed_resize_from_h=96).next()[0]
    assert torch.equal(noise, big[:, 2:10, 4:12])
    small = rng.randn(5, (4, 4, 6))  # noise of a 48x32 image pasted into the middle of 64x64 noise
    noise = rng.ImageRNG((4, 8, 8), [5], seed_resize_from_w=48, seed_resize_from_h=32).next()[0]
    assert torch.equal(noise[:, 2:6, 1:7], small)
    gen = rng.create_generator(5)
    rng.randn_from(gen, (4, 8, 8))
    assert torch.equal(noise[:, 0, :], rng.randn(5, (4, 8, 8))[:, 0, :])  # outside: the seed's own noise


def test_sampler_noise_continues_each_images_generator_and_ensd_reseeds_it():
    shape = (4, 8, 8)
    plain = rng.ImageRNG(shape, [7, 8])
    plain.next()
    step_noise = plain.next()
    gen = rng.create_generator(8)
    rng.randn_from(gen, shape)
    assert torch.equal(step_noise[1], rng.randn_from(gen, shape))

    ensd = rng.ImageRNG(shape, [7, 8], eta_noise_seed_delta=31337)
    assert torch.equal(ensd.next(), rng.ImageRNG(shape, [7, 8]).next())  # first noise unchanged
    assert torch.equal(ensd.next()[0], rng.randn(7 + 31337, shape))


def test_bad_source_and_shape_are_clear_errors():
    with pytest.raises(ValueError, match="unknown RNG source"):
        rng.create_generator(1, "TPU")
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        rng.ImageRNG((1, 4, 8, 8), [1])
