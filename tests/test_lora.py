"""LoRA: kohya names -> our weights, the low-rank delta against merging by hand, exact unpatching."""
import copy
import hashlib
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from modules.ldm.config import build_from_config
from modules.lora import (
    LoraDatabase,
    LoraExtraNetworks,
    apply_loras,
    build_key_table,
    load_lora,
    lora_tags,
    parse_extra_networks,
)
from tests.tiny import make_tiny_model


@pytest.mark.parametrize("config", ["configs/v1-inference.yaml", "configs/v2-inference.yaml"])
def test_kohya_names_map_to_the_ldm_weights_of_real_sd_layouts(config):
    model = build_from_config(config, device="meta")
    table = build_key_table(model)
    unet = "model.diffusion_model."
    expected = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q":
            unet + "input_blocks.1.1.transformer_blocks.0.attn1.to_q",
        "lora_unet_down_blocks_2_resnets_1_conv2": unet + "input_blocks.8.0.out_layers.3",
        "lora_unet_down_blocks_1_downsamplers_0_conv": unet + "input_blocks.6.0.op",
        "lora_unet_down_blocks_1_resnets_0_conv_shortcut": unet + "input_blocks.4.0.skip_connection",
        "lora_unet_mid_block_attentions_0_proj_in": unet + "middle_block.1.proj_in",
        "lora_unet_mid_block_resnets_1_time_emb_proj": unet + "middle_block.2.emb_layers.1",
        "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2":
            unet + "output_blocks.11.1.transformer_blocks.0.ff.net.2",
        "lora_unet_up_blocks_1_attentions_1_transformer_blocks_0_attn2_to_out_0":
            unet + "output_blocks.4.1.transformer_blocks.0.attn2.to_out.0",
        "lora_unet_up_blocks_0_upsamplers_0_conv": unet + "output_blocks.2.1.conv",
        "lora_unet_up_blocks_2_upsamplers_0_conv": unet + "output_blocks.8.2.conv",
        "lora_unet_up_blocks_1_resnets_2_conv1": unet + "output_blocks.5.0.in_layers.2",
        "lora_unet_conv_in": unet + "input_blocks.0.0",
        "lora_unet_conv_out": unet + "out.2",
        "lora_unet_time_embedding_linear_2": unet + "time_embed.2",
        "lora_unet_input_blocks_4_1_proj_out": unet + "input_blocks.4.1.proj_out",  # LDM-style name
    }
    for key, path in expected.items():
        assert table[key].path == path and table[key].kind == "unet", key
    patchable = {n for n, m in model.model.diffusion_model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    diffusers_targets = {t.path for k, t in table.items() if k.startswith("lora_unet_") and t.kind == "unet"}
    assert len(diffusers_targets) == len(patchable)
    if "v1" in config:
        target = table["lora_te_text_model_encoder_layers_11_mlp_fc2"]
        assert target.path == "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2"
    else:
        target = table["lora_te_text_model_encoder_layers_5_self_attn_k_proj"]
        assert (target.path, target.param, target.part) == (
            "cond_stage_model.model.transformer.resblocks.5.attn", "in_proj_weight", 1)
        assert table["lora_te_text_model_encoder_layers_23_mlp_fc1"].path.endswith("resblocks.23.mlp.c_fc")
    assert target.kind == "te"


def random_lora(keys_shapes, rank=4, alpha=2.0, seed=0):
    """{prefix: (out, in, kh, kw) or (out, in)} -> kohya tensors with random up/down."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for prefix, shape in keys_shapes.items():
        out_ch, in_ch, *k = shape
        tensors[f"{prefix}.lora_down.weight"] = torch.randn(rank, in_ch, *k, generator=g) * 0.3
        tensors[f"{prefix}.lora_up.weight"] = torch.randn(out_ch, rank, *([1] * len(k)), generator=g) * 0.3
        tensors[f"{prefix}.alpha"] = torch.tensor(alpha)
    return tensors


def merge_by_hand(model, tensors, where, te_mult, unet_mult, rank=4, alpha=2.0):
    """W += up @ down * alpha / rank * multiplier, written out per layer kind."""
    merged = copy.deepcopy(model)
    with torch.no_grad():
        for prefix, (path, part) in where.items():
            up, down = tensors[f"{prefix}.lora_up.weight"], tensors[f"{prefix}.lora_down.weight"]
            mult = te_mult if path.startswith("cond_stage_model") else unet_mult
            if down.ndim == 4:  # conv: up is [out, r, 1, 1], down is [r, in, kh, kw]
                delta = torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
            else:
                delta = up @ down
            delta = delta * (alpha / rank) * mult
            if part is None:
                merged.get_parameter(path).add_(delta.reshape(merged.get_parameter(path).shape))
            else:
                rows = delta.shape[0]
                merged.get_parameter(path)[part * rows:(part + 1) * rows] += delta
    return merged


def outputs(model):
    torch.manual_seed(1)
    x, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    with torch.no_grad():
        context = model.cond_stage_model.encode_tokens(model.cond_stage_model.tokenize(["a photo of a cat"]))
        return context, model.apply_model(x, t, context)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["tiny-v1", "tiny-v2"])
def test_lora_changes_outputs_by_the_low_rank_delta_and_unpatches_bit_for_bit(name, tmp_path):
    model = make_tiny_model(name)
    te_layer = "self_attn_k_proj" if name == "tiny-v2" else "mlp_fc1"
    te_path = ("cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight", 1) if name == "tiny-v2" \
        else ("cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight", None)
    shapes = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (32, 32),
        "lora_unet_down_blocks_0_resnets_0_conv1": (32, 32, 3, 3),
        "lora_unet_mid_block_attentions_0_proj_in": (64, 64, 1, 1) if name == "tiny-v1" else (64, 64),
        f"lora_te_text_model_encoder_layers_0_{te_layer}": (32, 32) if name == "tiny-v2" else (128, 32),
    }
    where = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k":
            ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", None),
        "lora_unet_down_blocks_0_resnets_0_conv1": ("model.diffusion_model.input_blocks.1.0.in_layers.2.weight", None),
        "lora_unet_mid_block_attentions_0_proj_in": ("model.diffusion_model.middle_block.1.proj_in.weight", None),
        f"lora_te_text_model_encoder_layers_0_{te_layer}": te_path,
    }
    tensors = random_lora(shapes)
    tensors["lora_unet_not_a_layer.lora_down.weight"] = torch.zeros(4, 8)
    tensors["lora_unet_not_a_layer.lora_up.weight"] = torch.zeros(8, 4)
    save_file(tensors, str(tmp_path / "ink.safetensors"))
    net = load_lora(tmp_path / "ink.safetensors")

    before, (context0, out0) = snapshot(model), outputs(model)
    expected_context, expected_out = outputs(merge_by_hand(model, tensors, where, 0.5, 1.5))
    with apply_loras(model, [(net, 0.5, 1.5)]) as report:
        context, out = outputs(model)
        assert report.patched == 4
        assert any("not_a_layer" in m for m in report.messages)
    torch.testing.assert_close(context, expected_context)
    torch.testing.assert_close(out, expected_out)
    assert not torch.allclose(context, context0) and not torch.allclose(out, out0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    torch.testing.assert_close(outputs(model)[1], out0, rtol=0, atol=0)


def test_two_loras_and_zero_multipliers(tmp_path):
    model = make_tiny_model("tiny-v1")
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    path = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"
    a, b = random_lora({key: (32, 32)}, seed=1), random_lora({key: (32, 32)}, seed=2)
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    db = LoraDatabase(tmp_path)
    w0 = model.get_parameter(path).clone()
    with apply_loras(model, [(db.get("a"), 1.0, 1.0), (db.get("b"), 1.0, -2.0)]):
        got = model.get_parameter(path).clone()
    merged = merge_by_hand(merge_by_hand(model, a, {key: (path, None)}, 1, 1), b, {key: (path, None)}, 1, -2)
    torch.testing.assert_close(got, merged.get_parameter(path))
    with apply_loras(model, [(db.get("a"), 1.0, 0.0)]) as report:  # unet multiplier 0: nothing to patch
        assert report.patched == 0 and torch.equal(model.get_parameter(path), w0)


def test_extra_networks_service_strips_tags_reports_missing_and_hashes(tmp_path):
    model = make_tiny_model("tiny-v1")
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file(random_lora({key: (32, 32)}), str(tmp_path / "ink.safetensors"), metadata={"ss_output_name": "ink"})
    service = LoraExtraNetworks(LoraDatabase(tmp_path))
    prompts, context = service(model, ["a cat <lora:ink:0.7> <lora:gone:1>, <hypernet:x:1>", "b <lora:ink:1>"])
    assert prompts == ["a cat  , ", "b "]
    before = snapshot(model)
    with context as report:
        assert [(n.name, te, unet) for n, te, unet in report.applied] == [("ink", 0.7, 0.7)]
        assert any("gone" in m for m in report.messages) and any("hypernet" in m for m in report.messages)
        data = (tmp_path / "ink.safetensors").read_bytes()
        header = int.from_bytes(data[:8], "little")
        addnet = hashlib.sha256(data[8 + header:]).hexdigest()[:12]
        assert report.extra_generation_params() == {"Lora hashes": f"ink: {addnet}"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_tag_syntax():
    text, nets = parse_extra_networks("x <lora:a> <lora:b:0.5> <lora:c:1:0.2> <lora:d:te=0.3:unet=2> <lora:e:oops>")
    tags, messages = lora_tags(nets["lora"])
    assert text == "x     "
    assert [(t.name, t.te_multiplier, t.unet_multiplier) for t in tags] == [
        ("a", 1.0, 1.0), ("b", 0.5, 0.5), ("c", 1.0, 0.2), ("d", 0.3, 2.0)]
    assert messages and "oops" in messages[0]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pt_files_load_safely(tmp_path):
    key = "lora_te_text_model_encoder_layers_0_mlp_fc2"
    torch.save(random_lora({key: (32, 128)}), tmp_path / "ok.pt")
    assert set(load_lora(tmp_path / "ok.pt").layers) == {key}
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(ValueError, match="safely"):
        load_lora(tmp_path / "evil.pt")
