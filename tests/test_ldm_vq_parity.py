"""The latent-diffusion / VQ-GAN networks against independent implementations on tiny random weights.

VQ first stage: diffusers' VQModel (its LDM converter + the codebook); the LDSR UNet (plain attention
blocks, 6 input channels): diffusers' UNet2DModel; the txt2img-f8-large text encoder's layers:
torch's own nn.TransformerEncoderLayer (pre-norm). Recipes: ../shared/ldm/LDM.md.
"""
import pytest
import torch

from modules.ldm.bert_embedder import BERTEmbedder
from modules.ldm.unet import UNetConfig, UNetModel
from modules.ldm.vqgan import VQConfig, VQModelInterface

diffusers = pytest.importorskip("diffusers")
sfu = pytest.importorskip("diffusers.loaders.single_file_utils")


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Every tensor random (default init's zero biases and unit norms would hide mapping bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def tiny_vq(attn_type: str = "vanilla", attn_resolutions=(), n_embed: int = 64) -> VQModelInterface:
    cfg = VQConfig.from_params({"embed_dim": 3, "n_embed": n_embed, "ddconfig": {
        "double_z": False, "z_channels": 3, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 2], "num_res_blocks": 2, "attn_resolutions": list(attn_resolutions), "dropout": 0.0,
        "attn_type": attn_type}})
    model = VQModelInterface(cfg).eval()
    randomize(model, 1)
    return model.double()


def _level_attention(sd: dict, ours: str, theirs: str) -> dict:
    """our encoder.down.i.attn.j / decoder.up.i.attn.j (1x1 convs) -> diffusers' Attention (linears)."""
    names = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
    out = {}
    for a, b in names.items():
        w = sd[f"{ours}.{a}.weight"]
        out[f"{theirs}.{b}.weight"] = w if a == "norm" else w[:, :, 0, 0]
        out[f"{theirs}.{b}.bias"] = sd[f"{ours}.{a}.bias"]
    return out


def diffusers_vq(model: VQModelInterface, attn_resolutions=()):
    levels = len(model.config.ch_mult)
    attn_levels = [i for i in range(levels) if model.config.resolution // 2 ** i in attn_resolutions]
    down = ["AttnDownEncoderBlock2D" if i in attn_levels else "DownEncoderBlock2D" for i in range(levels)]
    up = ["AttnUpDecoderBlock2D" if levels - 1 - i in attn_levels else "UpDecoderBlock2D" for i in range(levels)]
    cfg = {"down_block_types": down, "up_block_types": up}
    sd = model.state_dict()
    # the converter maps mid attention only; it passes level attention keys through unrenamed
    dsd = {k: v for k, v in sfu.convert_ldm_vae_checkpoint(sd, cfg).items() if ".attn." not in k}
    dsd["quantize.embedding.weight"] = sd["quantize.embedding.weight"]
    for i in attn_levels:
        for j in range(model.config.num_res_blocks):
            dsd.update(_level_attention(sd, f"encoder.down.{i}.attn.{j}", f"encoder.down_blocks.{i}.attentions.{j}"))
        for j in range(model.config.num_res_blocks + 1):
            dsd.update(_level_attention(sd, f"decoder.up.{i}.attn.{j}",
                                        f"decoder.up_blocks.{levels - 1 - i}.attentions.{j}"))
    ref = diffusers.VQModel(in_channels=3, out_channels=3, down_block_types=down, up_block_types=up,
                            block_out_channels=[32, 64], layers_per_block=2, latent_channels=3,
                            num_vq_embeddings=model.config.n_embed, vq_embed_dim=3, norm_num_groups=32,
                            mid_block_add_attention=model.config.attn_type != "none")
    ref.load_state_dict(dsd, strict=True)
    return ref.double().eval()


@pytest.mark.parametrize("attn_type,attn_resolutions", [("vanilla", ()), ("none", ()), ("vanilla", (32,))])
def test_vq_first_stage_matches_diffusers(attn_type, attn_resolutions):
    model = tiny_vq(attn_type, attn_resolutions)
    ref = diffusers_vq(model, attn_resolutions)
    x = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        h = model.encode(x)  # VQModelInterface: no quantization at encode
        h_ref = ref.encode(x).latents
        assert h.shape == (2, 3, 32, 24)
        torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-12)
        # the codebook is uniform(-1/64, 1/64): spread it over the latents so indices differ
        model.quantize.embedding.weight.copy_(h.permute(0, 2, 3, 1).reshape(-1, 3)[::23][:64])
        ref.quantize.embedding.weight.copy_(model.quantize.embedding.weight)
        idx = model.quantize(h)[2][2]
        assert torch.equal(idx, ref.quantize(h)[2][2])
        assert len(idx.unique()) > 20
        torch.testing.assert_close(model.decode(h), ref.decode(h).sample, rtol=0, atol=1e-10)
        torch.testing.assert_close(model.decode(h, force_not_quantize=True),
                                   ref.decode(h, force_not_quantize=True).sample, rtol=0, atol=1e-10)
        # quantized decode = decoding the codebook vectors of the indices
        torch.testing.assert_close(model.decode(h), model.decode_code(idx, (2, 32, 24)), rtol=0, atol=1e-12)
        assert not torch.allclose(model.decode(h), model.decode(h, force_not_quantize=True))


def test_quantizer_chunks_give_the_same_indices(monkeypatch):
    from modules.ldm import vqgan

    model = tiny_vq(n_embed=64)
    z = torch.randn(1, 3, 40, 40, dtype=torch.float64) * 0.02
    whole = model.quantize.indices(z)
    monkeypatch.setattr(vqgan, "DISTANCE_CHUNK", 7)
    assert torch.equal(model.quantize.indices(z), whole)


# --- the LDSR UNet ---------------------------------------------------------------------------------

def tiny_ldsr_unet() -> UNetModel:
    cfg = UNetConfig.from_params({"image_size": 16, "in_channels": 6, "out_channels": 3, "model_channels": 32,
                                  "attention_resolutions": [2], "num_res_blocks": 2, "channel_mult": [1, 2],
                                  "num_head_channels": 16})
    unet = UNetModel(cfg).eval()
    randomize(unet, 2)
    return unet


def _unet_to_diffusers(sd: dict, heads_of: dict) -> dict:
    """Our (original openaimodel) keys -> UNet2DModel's, for model_channels 32, mult [1, 2]; recipe in LDM.md."""
    res = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
    blocks = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
              "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out",
              "middle_block.0": "mid_block.resnets.0", "middle_block.1": "mid_block.attentions.0",
              "middle_block.2": "mid_block.resnets.1", "input_blocks.3.0.op": "down_blocks.0.downsamplers.0.conv",
              "output_blocks.2.2.conv": "up_blocks.0.upsamplers.0.conv"}
    for i in range(2):
        for j in range(2):
            blocks[f"input_blocks.{3 * i + 1 + j}.0"] = f"down_blocks.{i}.resnets.{j}"
            blocks[f"input_blocks.{3 * i + 1 + j}.1"] = f"down_blocks.{i}.attentions.{j}"
        for j in range(3):
            blocks[f"output_blocks.{3 * i + j}.0"] = f"up_blocks.{i}.resnets.{j}"
            blocks[f"output_blocks.{3 * i + j}.1"] = f"up_blocks.{i}.attentions.{j}"
    out = {}
    for key, value in sd.items():
        prefix = max((p for p in blocks if key.startswith(p + ".")), key=len)
        rest = key[len(prefix) + 1:]
        new = blocks[prefix]
        name, _, param = rest.rpartition(".")
        if name in res:
            out[f"{new}.{res[name]}.{param}"] = value
        elif name == "norm":
            out[f"{new}.group_norm.{param}"] = value
        elif name == "proj_out":
            out[f"{new}.to_out.0.{param}"] = value[:, :, 0] if param == "weight" else value
        elif name == "qkv":  # legacy layout: per head [q, k, v] blocks of d channels
            heads = heads_of[prefix]
            c = value.shape[0] // 3
            blocks_ = value.reshape(heads, 3, c // heads, *value.shape[1:])
            for n, part in enumerate(("to_q", "to_k", "to_v")):
                w = blocks_[:, n].reshape(c, *value.shape[1:])
                out[f"{new}.{part}.{param}"] = w[:, :, 0] if param == "weight" else w
        else:
            out[f"{new}.{rest}" if rest else new] = value
    return out


def test_ldsr_unet_matches_diffusers_unet2d():
    unet = tiny_ldsr_unet()
    assert type(unet.middle_block[1]).__name__ == "AttentionBlock"
    heads = {name: m.num_heads for name, m in unet.named_modules() if hasattr(m, "qkv")}
    sd = unet.state_dict()
    ref = diffusers.UNet2DModel(sample_size=16, in_channels=6, out_channels=3, layers_per_block=2,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=16,
                                flip_sin_to_cos=True, freq_shift=0, downsample_padding=1)
    ref.load_state_dict(_unet_to_diffusers(sd, heads), strict=True)
    ref.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 16, 24, generator=g)
    t = torch.tensor([1, 991])
    with torch.no_grad():
        ours = unet(x, t)
        theirs = ref(x, t).sample
    assert ours.abs().mean() > 0.05
    scale = theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() <= 1e-5 * scale


# --- txt2img-f8-large's BERTEmbedder layers ---------------------------------------------------------

def test_bert_embedder_matches_torch_pre_norm_encoder():
    dim, depth = 512, 2  # inner width 8 x 64 = dim, so torch's MultiheadAttention can hold the weights
    ours = BERTEmbedder(dim, depth, vocab_size=100, max_seq_len=77).eval()
    randomize(ours, 3)
    layers = []
    for i in range(depth):
        (n1, attn), (n2, ff) = ours.transformer.attn_layers.layers[2 * i], ours.transformer.attn_layers.layers[2 * i + 1]
        ref = torch.nn.TransformerEncoderLayer(dim, 8, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=True)
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]))
            ref.self_attn.in_proj_bias.zero_()
            ref.self_attn.out_proj.weight.copy_(attn.to_out.weight)
            ref.self_attn.out_proj.bias.copy_(attn.to_out.bias)
            ref.linear1.load_state_dict(ff.net[0][0].state_dict())
            ref.linear2.load_state_dict(ff.net[2].state_dict())
            ref.norm1.load_state_dict(n1.state_dict())
            ref.norm2.load_state_dict(n2.state_dict())
        layers.append(ref.eval())
    tokens = torch.randint(0, 100, (2, 77), generator=torch.Generator().manual_seed(1))
    t = ours.transformer
    with torch.no_grad():
        x = t.token_emb(tokens) + t.pos_emb.emb.weight[None]
        for layer in layers:
            x = layer(x)
        expected = t.norm(x)
        got = ours.encode(tokens)
    assert got.shape == (2, 77, dim)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="vocab.txt"):
        ours.encode(["a photo of a cat"])
