"""CPU kernel choices of the networks: the GEMM convolution for small maps, the chunked feed-forward and
the channels-last autoencoder compute what the plain PyTorch modules compute."""
import pytest
import torch
import torch.nn.functional as F

from modules.ldm import attention, conv
from modules.ldm.attention import FeedForward
from modules.ldm.autoencoder import AutoencoderConfig, AutoencoderKL


def _conv(cin, cout, k, stride=1, padding=None, dtype=torch.float32):
    torch.manual_seed(0)
    layer = conv.Conv2d(cin, cout, k, stride=stride, padding=k // 2 if padding is None else padding)
    return layer.to(dtype)


@pytest.mark.parametrize("shape,k,stride", [
    ((2, 16, 4, 4), 3, 1),  # 32 positions: GEMM
    ((2, 16, 8, 8), 3, 2),  # strided, 32 positions: GEMM
    ((1, 16, 5, 7), 3, 1),  # odd, non-square
    ((2, 16, 8, 8), 1, 1),  # 1x1
    ((2, 8, 32, 32), 3, 1),  # 2048 positions: oneDNN
])
def test_conv_matches_torch_conv2d(shape, k, stride):
    layer = _conv(shape[1], 24, k, stride)
    x = torch.randn(shape)
    with torch.no_grad():
        ours = layer(x)
        ref = F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_conv_channels_last_input_and_bf16():
    layer = _conv(16, 24, 3)
    x = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        ref = F.conv2d(x, layer.weight, layer.bias, padding=1)
        torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), ref, rtol=1e-5, atol=1e-5)
        layer16 = layer.to(torch.bfloat16)
        out16 = layer16(x.bfloat16())
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), ref, rtol=0.05, atol=0.05)


def test_conv_gradients_match():
    """The demo model trains on the CPU through the same module."""
    layer = _conv(8, 8, 3)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    layer(x).square().sum().backward()
    ours = (x.grad.clone(), layer.weight.grad.clone())
    x.grad = None
    layer.weight.grad = None
    F.conv2d(x, layer.weight, layer.bias, padding=1).square().sum().backward()
    torch.testing.assert_close(ours[0], x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], layer.weight.grad, rtol=1e-5, atol=1e-5)


def test_gemm_is_chosen_for_small_maps_only():
    small, big = _conv(16, 16, 3), _conv(1280, 1280, 3)
    assert conv.gemm_pays(small, torch.empty(2, 16, 8, 8))  # 64 positions per image
    assert not conv.gemm_pays(small, torch.empty(2, 16, 16, 16))  # 256 positions, small weight
    assert conv.gemm_pays(big, torch.empty(2, 1280, 16, 16))  # 256 positions, 14.7 M weight
    assert not conv.gemm_pays(big, torch.empty(2, 1280, 32, 32))
    assert not conv.gemm_pays(small, torch.empty(2, 16, 8, 8, device="meta"))  # CPU only


def test_kernel_choice_and_result_do_not_depend_on_the_batch():
    """An image generated in a batch equals the same seed generated alone (batch size is not in the
    infotext, so pasting one back must reproduce it)."""
    layer = _conv(16, 16, 3)
    x = torch.randn(12, 16, 8, 8)
    assert conv.gemm_pays(layer, x) == conv.gemm_pays(layer, x[:2])
    with torch.no_grad():
        assert torch.equal(layer(x)[4:6], layer(x[4:6]))


def test_chunked_feed_forward_is_bit_identical():
    torch.manual_seed(0)
    ff = FeedForward(8).eval()
    x = torch.randn(3, attention.FF_CHUNK_TOKENS + 37, 8)  # more tokens than one chunk, ragged end
    with torch.no_grad():
        chunked = ff(x)
        whole = ff.net(x)
        alone = ff(x[1:2])
    assert chunked.shape == x.shape
    assert torch.equal(chunked, whole)
    assert torch.equal(chunked[1:2], alone)


def test_autoencoder_runs_channels_last_on_cpu_and_returns_nchw():
    cfg = AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32)
    torch.manual_seed(0)
    vae = AutoencoderKL(cfg).eval()
    seen = []
    vae.decoder.conv_in.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    z = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        image = vae.decode(z)
        nchw_image = vae.decoder(vae.post_quant_conv(z))  # the layers called directly keep NCHW
        moments = vae.encode(image).parameters
        nchw_moments = vae.quant_conv(vae.encoder(image))
    assert seen == [True, False]
    assert image.shape == (1, 3, 32, 32) and image.is_contiguous() and moments.is_contiguous()
    torch.testing.assert_close(image, nchw_image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(moments, nchw_moments, rtol=1e-4, atol=1e-5)
