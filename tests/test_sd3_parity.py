"""SD3 networks against independent implementations on the same tiny random weights (fp32):
MMDiT vs diffusers' SD3Transformer2DModel (loaded through diffusers' single-file converter), the
16-channel VAE vs diffusers' AutoencoderKL, CLIP-L/G vs transformers' CLIPTextModelWithProjection,
T5 vs transformers' T5EncoderModel; fp8 T5 storage vs fp16."""
import pytest
import torch

from modules.ldm.mmdit import PREFIX, MMDiT, MMDiTConfig
from modules.ldm.sd3 import SD3_VAE
from modules.ldm.t5 import T5Config, T5EncoderModel
from tests.tiny_sd3 import make_tiny_sd3

diffusers = pytest.importorskip("diffusers")
sfu = pytest.importorskip("diffusers.loaders.single_file_utils")
transformers = pytest.importorskip("transformers")


def assert_close(ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-4) -> None:
    """max abs error <= rel * the reference's scale (its max abs value)."""
    assert ours.shape == ref.shape
    scale = ref.abs().max().item()
    err = (ours.float() - ref.float()).abs().max().item()
    assert scale > 0 and err <= rel * scale, f"max abs error {err:.3g} > {rel} * scale {scale:.3g}"


def tiny_mmdit(qk_norm: bool, dual: tuple, seed: int = 0) -> MMDiT:
    cfg = MMDiTConfig(hidden_size=64, depth=3, num_heads=2, pos_embed_max_size=8, adm_in_channels=24,
                      context_in_features=40, qk_norm=qk_norm, x_block_self_attn_layers=dual)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MMDiT(cfg).eval()
        with torch.no_grad():  # well away from init: adaLN and norms matter
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    return model


def diffusers_transformer(model: MMDiT):
    cfg = model.config
    sd = {PREFIX + k: v.clone() for k, v in model.state_dict().items()}
    converted = sfu.convert_sd3_transformer_checkpoint_to_diffusers(sd)
    assert not sd, f"the converter left keys: {list(sd)[:3]}"  # every key mapped
    ref = diffusers.SD3Transformer2DModel(
        sample_size=cfg.pos_embed_max_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
        num_layers=cfg.depth, attention_head_dim=cfg.head_dim, num_attention_heads=cfg.num_heads,
        joint_attention_dim=cfg.context_in_features, caption_projection_dim=cfg.hidden_size,
        pooled_projection_dim=cfg.adm_in_channels, out_channels=cfg.out_channels,
        pos_embed_max_size=cfg.pos_embed_max_size, qk_norm="rms_norm" if cfg.qk_norm else None,
        dual_attention_layers=tuple(cfg.x_block_self_attn_layers))
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


@pytest.mark.parametrize("qk_norm, dual", [(False, ()), (True, ()), (True, (0, 1))],
                         ids=["mmdit", "qk-norm", "mmdit-x"])
@pytest.mark.parametrize("size, skip", [((8, 8), ()), ((6, 12), ()), ((8, 8), (1,))],
                         ids=["square", "non-square-smaller-than-grid", "skip-layer"])
def test_mmdit_matches_diffusers(qk_norm, dual, size, skip):
    model = tiny_mmdit(qk_norm, dual)
    ref = diffusers_transformer(model)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, *size, generator=g)
    t = torch.tensor([999.0, 31.5])  # 1000 * sigma, fractional
    y = torch.randn(2, 24, generator=g)
    context = torch.randn(2, 9, 40, generator=g)
    with torch.no_grad():
        ours = model(x, t, y, context, skip_layers=skip)
        theirs = ref(hidden_states=x, timestep=t, encoder_hidden_states=context, pooled_projections=y,
                     skip_layers=list(skip) or None).sample
        full = model(x, t, y, context)
    assert ours.abs().mean() > 0.05
    assert_close(ours, theirs)
    if skip:
        assert (ours - full).abs().max() > 1e-3  # skipping a block changes the output


def test_odd_latent_is_padded_and_cropped_back():
    model = tiny_mmdit(True, (0,))
    x = torch.randn(1, 16, 7, 9)
    t, y, context = torch.tensor([500.0]), torch.randn(1, 24), torch.randn(1, 5, 40)
    with torch.no_grad():
        out = model(x, t, y, context)
        padded = model(torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate"), t, y, context)
    assert out.shape == x.shape
    assert torch.equal(out, padded[..., :7, :9])


def test_too_large_latent_message():
    model = tiny_mmdit(False, ())
    with pytest.raises(ValueError, match="image too large for this model"):
        model(torch.randn(1, 16, 18, 8), torch.tensor([1.0]), torch.randn(1, 24), torch.randn(1, 3, 40))


def test_vae_matches_diffusers_16_channels():
    vae = make_tiny_sd3(seed=2).first_stage_model
    assert not hasattr(vae, "quant_conv") and not hasattr(vae, "post_quant_conv")
    cfg = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[32, 64], layers_per_block=1,
               down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
               norm_num_groups=32, use_quant_conv=False, use_post_quant_conv=False)
    ref = diffusers.AutoencoderKL(**cfg)
    ref.load_state_dict(sfu.convert_ldm_vae_checkpoint(vae.state_dict(), cfg), strict=True)
    ref.eval()
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    z = torch.randn(1, 16, 8, 8, generator=g)
    with torch.no_grad():
        assert_close(vae.encode(image).mean, ref.encode(image).latent_dist.mean)
        assert_close(vae.decode(z), ref.decode(z).sample)


def test_full_size_sd3_vae_layout_matches_diffusers():
    """The real SD3 VAE config (meta): the same key set and shapes as diffusers' 16-channel AutoencoderKL."""
    from modules.ldm.autoencoder import AutoencoderKL

    with torch.device("meta"):
        ours = AutoencoderKL(SD3_VAE).state_dict()
        cfg = dict(latent_channels=16, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                   down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                   use_quant_conv=False, use_post_quant_conv=False)
        ref = diffusers.AutoencoderKL(**cfg).state_dict()
    converted = sfu.convert_ldm_vae_checkpoint(ours, cfg)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in ref.items()}


@pytest.mark.parametrize("name, act", [("clip_l", "quick_gelu"), ("clip_g", "gelu")])
def test_clip_matches_transformers(name, act):
    encoder = getattr(make_tiny_sd3(seed=3).text_encoders, name)
    cfg = encoder.config
    assert cfg.hidden_act == act
    ref_cfg = transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=4 * cfg.width,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, max_position_embeddings=cfg.max_length,
        hidden_act=act, projection_dim=cfg.embed_dim or cfg.width, eos_token_id=49407, bos_token_id=49406,
        pad_token_id=1)
    ref = transformers.CLIPTextModelWithProjection(ref_cfg).eval()
    sd = dict(encoder.transformer.state_dict())
    if "text_projection.weight" not in sd:  # CLIP-L: SD3 never projects its pooled vector
        sd["text_projection.weight"] = ref.text_projection.weight.detach().clone()
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert unexpected == [] and all("position_ids" in k for k in missing)
    ids = encoder.tokenize(["a red circle on the left", "a photograph of an astronaut riding a horse"])
    with torch.no_grad():
        hidden, pooled = encoder.hidden_and_pooled(ids)
        out = ref(input_ids=ids, output_hidden_states=True)
    assert_close(hidden, out.hidden_states[-2])  # penultimate, no final LayerNorm
    if name == "clip_g":
        assert_close(pooled, out.text_embeds)  # projected
    else:
        eos = (ids == 49407).int().argmax(-1)
        assert_close(pooled, out.last_hidden_state[torch.arange(2), eos])  # final LN at the first EOS, unprojected


def tiny_t5(seed: int = 0) -> T5EncoderModel:
    cfg = T5Config(vocab_size=128, d_model=64, d_kv=16, num_heads=4, d_ff=96, num_layers=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(cfg).eval()
        with torch.no_grad():  # T5's own init: N(0, fan_in^-1/2), q also / sqrt(d_kv) (no attention scaling)
            for name, p in model.named_parameters():
                if p.dim() == 2 and "shared" not in name and "relative" not in name:
                    p.normal_(0, p.shape[1] ** -0.5 / (cfg.d_kv ** 0.5 if name.endswith("q.weight") else 1))
    return model


def reference_t5(model: T5EncoderModel):
    cfg = model.config
    ref = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance, feed_forward_proj="gated-gelu",
        dropout_rate=0.0)).eval()
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref


def test_t5_matches_transformers():
    model = tiny_t5()
    ref = reference_t5(model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 128, (2, 150), generator=g)  # longer than max_distance: the log buckets matter
    with torch.no_grad():
        ours = model(ids)
        theirs = ref(input_ids=ids).last_hidden_state
    assert_close(ours, theirs)


@pytest.mark.parametrize("storage", [torch.float16, torch.bfloat16])
def test_t5_half_storage_runs_in_fp32(storage):
    model = tiny_t5()
    expected = reference_t5(model)
    ids = torch.randint(0, 128, (1, 77), generator=torch.Generator().manual_seed(1))
    model.to(storage)
    with torch.no_grad():
        ours = model(ids, torch.float32)
        rounded = reference_t5(tiny_t5())
        rounded.load_state_dict({k: v.to(storage).float() for k, v in expected.state_dict().items()})
        theirs = rounded(input_ids=ids).last_hidden_state
    assert all(p.dtype == storage for p in model.parameters())  # stored as given, upcast per layer
    assert_close(ours, theirs)


def test_fp8_t5_gives_the_fp16_result_within_fp8_rounding():
    fp16 = tiny_t5()
    fp16.to(torch.float16)
    fp8 = tiny_t5()
    fp8.load_state_dict({k: v.to(torch.float8_e4m3fn) for k, v in fp16.state_dict().items()}, assign=True)
    assert fp8.shared.weight.dtype == torch.float8_e4m3fn
    ids = torch.randint(0, 128, (2, 77), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out8 = fp8(ids)
        out16 = fp16(ids)
        # the fp8 values exactly, held in fp32: what fp8 storage must compute
        exact = tiny_t5()
        exact.load_state_dict({k: v.float() for k, v in fp8.state_dict().items()})
        reference = exact(ids)
    assert_close(out8, reference, rel=1e-5)
    # e4m3 keeps 3 mantissa bits (relative rounding <= 2^-4 per weight, ~0.036 rms): after 3 blocks the
    # output moves by a few percent (measured 0.066-0.072 over 4 seeds), and no more
    rel = ((out8 - out16).norm() / out16.norm()).item()
    assert 0.01 < rel < 0.15, rel


def test_t5_in_fp16_compute_is_refused():
    with pytest.raises(ValueError, match="overflows in float16"):
        tiny_t5()(torch.zeros(1, 4, dtype=torch.long), torch.float16)

