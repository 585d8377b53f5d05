"""The LatentDiffusion contract on tiny models: conditioning routes, VAE scaling, tokenizer, x4
noise augmentation, attention injection, dtypes."""
import pytest
import torch
import torch.nn.functional as F

from modules.ldm.attention import CrossAttention, sdpa_attention
from tests.tiny import TINY_CONFIGS, make_tiny_model


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = make_tiny_model("tiny-v2", seed=5), make_tiny_model("tiny-v2", seed=5)
    assert torch.rand(1) == before
    c = make_tiny_model("tiny-v2", seed=6)
    w = "model.diffusion_model.input_blocks.0.0.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])
    assert not a.training and not any(p.requires_grad for p in a.parameters())


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_every_tiny_model_denoises_and_round_trips_the_vae(name):
    model = make_tiny_model(name)
    f, b = model.vae_scale_factor, 2
    image = torch.rand(b, 3, 8 * f, 8 * f) * 2 - 1
    with torch.no_grad():
        z = model.get_first_stage_encoding(model.encode_first_stage(image))
        assert z.shape == (b, model.latent_channels, 8, 8)
        context = model.get_learned_conditioning(["a cat", "a dog"])
        cond = {"c_crossattn": [context]}
        in_ch = model.model.diffusion_model.config.in_channels
        if name == "tiny-x4":
            cond.update(model.low_scale_conditioning(image[:, :, ::f, ::f], noise_level=20))
        elif in_ch > 4:
            cond["c_concat"] = [torch.randn(b, in_ch - 4, 8, 8)]
        out = model.apply_model(z, torch.tensor([999, 1]), cond if len(cond) > 1 else context)
        assert out.shape == z.shape and torch.isfinite(out).all()
        assert model.decode_first_stage(z).shape == image.shape


def test_tensor_cond_equals_dict_and_list_cond(v1):
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    context = torch.randn(1, 77, 32)
    with torch.no_grad():
        a = v1.apply_model(x, t, context)
        assert torch.equal(a, v1.apply_model(x, t, [context]))
        assert torch.equal(a, v1.apply_model(x, t, {"c_crossattn": [context]}))
        # two 77-token chunks are concatenated along the token axis: a different context
        assert not torch.allclose(a, v1.apply_model(x, t, torch.cat([context, context.flip(1)], 1)))


def test_hybrid_concatenates_image_conditioning_after_the_latent():
    model = make_tiny_model("tiny-v1-inpainting")
    x, t, context = torch.randn(1, 4, 8, 8), torch.tensor([300]), torch.randn(1, 77, 32)
    mask, masked = torch.ones(1, 1, 8, 8), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        out = model.apply_model(x, t, {"c_concat": [mask, masked], "c_crossattn": [context]})
        direct = model.model.diffusion_model(torch.cat([x, mask, masked], 1), t, context=context)
    assert torch.equal(out, direct)
    with pytest.raises(ValueError, match="needs c_concat"):
        model.apply_model(x, t, context)


def test_first_stage_scaling(v1):
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        posterior = v1.encode_first_stage(image)
        z = v1.get_first_stage_encoding(posterior.mode())
        assert torch.allclose(z, 0.18215 * posterior.mean)
        decoded = v1.decode_first_stage(z)
        assert torch.allclose(decoded, v1.first_stage_model.decode(posterior.mean), atol=1e-5)
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        assert torch.equal(v1.get_first_stage_encoding(posterior, g1), v1.get_first_stage_encoding(posterior, g2))
    assert posterior.kl().shape == (1,) and (posterior.kl() >= 0).all()


def test_tokenizer_matches_open_clip_and_pads_per_version(v1):
    import open_clip

    v2 = make_tiny_model("tiny-v2")
    texts = ["a photo of a cat", "word " * 100]
    ref = open_clip.tokenize(texts)  # pads with 0, truncates keeping EOS last
    ours2 = v2.cond_stage_model.tokenize(texts)
    assert torch.equal(ours2, ref)
    ours1 = v1.cond_stage_model.tokenize(texts)
    assert torch.equal(ours1[ref != 0], ref[ref != 0])
    assert (ours1[ref == 0] == 49407).all()  # v1 pads with <|endoftext|>
    te = v1.cond_stage_model
    assert (te.id_start, te.id_end, te.id_pad, te.width, te.max_length) == (49406, 49407, 49407, 32, 77)
    assert v2.cond_stage_model.id_pad == 0 and te.tokenizer is v2.cond_stage_model.tokenizer


def test_text_encoder_interface(v1):
    te = v1.cond_stage_model
    ids = te.tokenize(["a red ball"])
    with torch.no_grad():
        embeds = te.embed_tokens(ids)
        assert embeds.shape == (1, 77, 32)
        assert torch.equal(te.encode_embeddings(embeds), te.encode_tokens(ids))
        assert torch.equal(te(["a red ball"]), te.encode_tokens(ids))
        assert not torch.allclose(te.encode_tokens(ids, clip_skip=2), te.encode_tokens(ids))
    with pytest.raises(ValueError, match="clip skip"):
        te.encode_tokens(ids, clip_skip=3)
    with pytest.raises(ValueError, match="at most 77"):
        te.encode_embeddings(torch.zeros(1, 78, 32))


def test_x4_noise_augmentation():
    model = make_tiny_model("tiny-x4")
    lsm = model.low_scale_model
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    noise = torch.randn_like(x)
    level = torch.tensor([0, 349])
    a = lsm.sqrt_alphas_cumprod[level][:, None, None, None]
    expected = a * x + (1 - a ** 2).sqrt() * noise  # Ho et al. 2020, eq. 4
    assert torch.allclose(lsm.q_sample(x, level, noise), expected, atol=1e-6)
    cond = model.low_scale_conditioning(x, noise_level=20, generator=torch.Generator().manual_seed(0))
    assert cond["c_adm"].tolist() == [20, 20] and cond["c_concat"][0].shape == x.shape
    with pytest.raises(ValueError, match="noise level"):
        model.low_scale_conditioning(x, noise_level=350)
    with pytest.raises(ValueError, match="c_adm"):
        model.apply_model(torch.randn(2, 4, 8, 8), torch.tensor([1, 2]),
                          {"c_concat": cond["c_concat"], "c_crossattn": [torch.randn(2, 77, 32)]})


def test_attention_is_injectable(v1):
    calls = []

    def math_attention(q, k, v, heads):  # the same softmax(q k^T / sqrt(d)) v, written out
        calls.append(q.shape)
        b, n, inner = q.shape
        q, k, v = (t.reshape(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
        w = torch.softmax(q @ k.transpose(-1, -2) / (inner // heads) ** 0.5, dim=-1)
        return (w @ v).transpose(1, 2).reshape(b, n, inner)

    unet = v1.model.diffusion_model
    x, t, context = torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 77, 32)
    with torch.no_grad():
        ref = unet(x, t, context)
        unet.set_attention(math_attention)
        try:
            out = unet(x, t, context)
            n_attention = sum(isinstance(m, CrossAttention) for m in unet.modules())
            assert len(calls) == n_attention == 2 * 7  # attn1 + attn2 in 2 down, 1 middle, 4 up blocks
            unet.set_attention(lambda q, k, v, heads: torch.zeros_like(q))
            assert not torch.allclose(unet(x, t, context), ref)
        finally:
            unet.set_attention(sdpa_attention)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_half_precision_weights_keep_fp32_schedule_and_io():
    model = make_tiny_model("tiny-v2", dtype=torch.bfloat16)
    assert model.model.diffusion_model.out[2].weight.dtype == torch.bfloat16
    assert model.alphas_cumprod.dtype == torch.float32
    assert model.dtype == torch.bfloat16 and model.device == torch.device("cpu")
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        context = model.get_learned_conditioning(["a cat"])
        out = model.apply_model(x, torch.tensor([500]), context)
        assert out.dtype == torch.float32  # the sampler's dtype is kept
        ref = make_tiny_model("tiny-v2").apply_model(x, torch.tensor([500]), context.float())
    assert F.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.99


def test_latent_sizes_not_divisible_by_the_unet_depth(v1):
    """A 72 px image has a 9-cell latent (9 -> 5 -> up 10): resized to the skip size, as A1111."""
    with torch.no_grad():
        out = v1.apply_model(torch.randn(1, 4, 9, 7), torch.tensor([10]), torch.randn(1, 77, 32))
    assert out.shape == (1, 4, 9, 7) and torch.isfinite(out).all()
