"""Our networks against independent implementations on the same tiny random weights (fp32).

UNet / VAE: diffusers, loaded through its own LDM-checkpoint converters (single_file_utils).
v1 text: transformers' CLIPTextModel. v2 text: open_clip's TextTransformer.
"""
import pytest
import torch

from modules.ldm.config import load_config
from tests.tiny import make_tiny_model, tiny_config_path

diffusers = pytest.importorskip("diffusers")
sfu = pytest.importorskip("diffusers.loaders.single_file_utils")


def assert_close(ours: torch.Tensor, ref: torch.Tensor, rel: float = 1e-4) -> None:
    """max abs error <= rel * the reference's scale (its max abs value)."""
    assert ours.shape == ref.shape
    scale = ref.abs().max().item()
    err = (ours - ref).abs().max().item()
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel} * scale {scale:.3g}"


def diffusers_unet(name: str, model):
    cfg = load_config(tiny_config_path(name))
    sd = model.state_dict()
    ucfg = sfu.create_unet_diffusers_config_from_ldm(cfg, sd, image_size=64)
    unet = diffusers.UNet2DConditionModel(**ucfg)
    unet.load_state_dict(sfu.convert_ldm_unet_checkpoint(sd, ucfg), strict=True)
    return unet.eval()


def diffusers_vae(name: str, model):
    cfg = load_config(tiny_config_path(name))
    sd = model.state_dict()
    vcfg = sfu.create_vae_diffusers_config_from_ldm(cfg, sd, image_size=64)
    vae = diffusers.AutoencoderKL(**vcfg)
    vae.load_state_dict(sfu.convert_ldm_vae_checkpoint(sd, vcfg), strict=True)
    return vae.eval()


@pytest.mark.parametrize("name,in_channels", [
    ("tiny-v1", 4), ("tiny-v1-inpainting", 9), ("tiny-v2", 4), ("tiny-v2-depth", 5), ("tiny-x4", 7)])
def test_unet_matches_diffusers(name, in_channels):
    model = make_tiny_model(name, seed=1)
    unet = model.model.diffusion_model
    assert unet.config.in_channels == in_channels
    ref = diffusers_unet(name, model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_channels, 8, 8, generator=g)
    t = torch.tensor([10, 900])
    context = torch.randn(2, 77, 32, generator=g)
    y = torch.tensor([20, 300]) if name == "tiny-x4" else None
    with torch.no_grad():
        ours = unet(x, t, context=context, y=y)
        theirs = ref(x, t, encoder_hidden_states=context, class_labels=y).sample
    assert ours.abs().mean() > 0.05  # a real signal, not zeros
    assert_close(ours, theirs)


@pytest.mark.parametrize("name", ["tiny-v1", "tiny-x4"])
def test_vae_matches_diffusers(name):
    model = make_tiny_model(name, seed=2)
    vae = model.first_stage_model
    ref = diffusers_vae(name, model)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        posterior = vae.encode(x)
        ref_posterior = ref.encode(x).latent_dist
        assert_close(posterior.mean, ref_posterior.mean)
        assert_close(posterior.logvar, ref_posterior.logvar)
        z = posterior.mode()
        assert_close(vae.decode(z), ref.decode(z).sample)
    assert z.shape[-1] * model.vae_scale_factor == 32


def test_v1_text_encoder_matches_transformers_with_clip_skip():
    transformers = pytest.importorskip("transformers")
    model = make_tiny_model("tiny-v1", seed=3)
    te = model.cond_stage_model
    cfg = transformers.CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                                      hidden_act="quick_gelu", layer_norm_eps=1e-5,
                                      bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    ref = transformers.CLIPTextModel(cfg).eval()
    # transformers 5 flattened CLIPTextModel (no `text_model.` level); 4.x kept it
    text_model = getattr(ref, "text_model", ref)
    prefix = "transformer.text_model." if text_model is ref else "transformer."
    sd = {k.removeprefix(prefix): v for k, v in te.state_dict().items()}
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not missing and all(k.endswith("position_ids") for k in unexpected)
    ids = te.tokenize(["a photo of a cat", "an astronaut riding a horse on the moon"])
    with torch.no_grad():
        out = ref(input_ids=ids, output_hidden_states=True)
        assert_close(te.encode_tokens(ids), out.last_hidden_state)
        skip2 = text_model.final_layer_norm(out.hidden_states[-2])
        assert_close(te.encode_tokens(ids, clip_skip=2), skip2)
        assert_close(model.get_learned_conditioning(["a photo of a cat"]), out.last_hidden_state[:1])


@pytest.mark.parametrize("layer", ["penultimate", "last"])
def test_v2_text_encoder_matches_open_clip(layer):
    from open_clip.transformer import TextTransformer

    model = make_tiny_model("tiny-v2", seed=4)
    te = model.cond_stage_model
    te.layer_idx = 1 if layer == "penultimate" else 0
    ref = TextTransformer(context_length=77, vocab_size=49408, width=32, heads=2, layers=2,
                          output_dim=32, output_tokens=True).eval()
    sd = {k.removeprefix("model."): v for k, v in te.state_dict().items() if k != "model.logit_scale"}
    ref.load_state_dict(sd, strict=True)
    ids = te.tokenize(["a photo of a cat", "an astronaut riding a horse on the moon"])
    assert ids[0, 6] == 49407 and ids[0, 7:].eq(0).all()  # BOS + 5 tokens + EOS, then 0 (open_clip)
    with torch.no_grad():
        if layer == "last":
            _, expected = ref(ids)
        else:  # open_clip's own intermediates: output of block L-1, through ln_final
            out = ref.forward_intermediates(ids, indices=[0], normalize_intermediates=True,
                                            intermediates_only=True, output_fmt="NLC")
            expected = out["text_intermediates"][0]
        assert_close(te.encode_tokens(ids), expected)
