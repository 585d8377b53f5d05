"""The prompt services plugged into txt2img: long prompts, AND, editing, styles, embeddings, LoRA."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modules.conditioning import make_conditioner
from modules.embeddings import EmbeddingDatabase
from modules.lora import LoraDatabase, LoraExtraNetworks
from modules.options import Options
from modules.processing import ProcessingEnv, StableDiffusionProcessingTxt2Img, process_images
from modules.styles import StyleDatabase
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


@pytest.fixture()
def env(tmp_path):
    (tmp_path / "emb").mkdir()
    (tmp_path / "lora").mkdir()
    save_file({"emb_params": torch.randn(2, 32)}, str(tmp_path / "emb" / "inkstyle.safetensors"))
    g = torch.Generator().manual_seed(0)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v"
    save_file({f"{key}.lora_down.weight": torch.randn(4, 32, generator=g),
               f"{key}.lora_up.weight": torch.randn(32, 4, generator=g)}, str(tmp_path / "lora" / "ink.safetensors"))
    styles = StyleDatabase(tmp_path / "styles.csv")
    styles.set("painted", "{prompt}, oil painting", "lowres")
    opts = Options()
    opts.update({"samples_save": False, "grid_save": False, "return_grid": False, "live_previews_enable": False})
    return ProcessingEnv(opts=opts, data_dir=tmp_path, conditioner=make_conditioner(EmbeddingDatabase(tmp_path / "emb")),
                         styles=styles, extra_networks=LoraExtraNetworks(LoraDatabase(tmp_path / "lora")))


def run(model, env, **kw):
    args = dict(prompt="a photo of a cat", negative_prompt="blurry", seed=7, steps=3, width=64, height=64,
                sampler_name="Euler", cfg_scale=5.0)
    args.update(kw)
    return process_images(StableDiffusionProcessingTxt2Img(sd_model=model, env=env, **args))


def pixels(res):
    return np.asarray(res.images[0], dtype=np.int16)


def test_prompt_features_change_the_image(v1, env):
    base = pixels(run(v1, env))
    variants = {
        "long": dict(prompt="a photo of a cat, " * 40),                  # 200+ tokens vs a 1-chunk negative
        "and": dict(prompt="a photo of a cat AND a dog:0.7"),
        "editing": dict(prompt="a photo of a [cat:dog:1]", steps=3),
        "emphasis": dict(prompt="a photo of a (cat:1.6)"),
        "embedding": dict(prompt="a photo of a cat inkstyle"),
        "style": dict(styles=["painted"]),
    }
    for name, kw in variants.items():
        reference = base
        if name == "editing":  # a switch at the last of 3 steps can round away in 8-bit pixels: use 6
            reference, kw = pixels(run(v1, env, steps=6)), dict(kw, steps=6)
        assert np.abs(pixels(run(v1, env, **kw)) - reference).max() > 0, name


def test_lora_tag_changes_the_image_and_leaves_the_model_as_it_was(v1, env):
    before = {k: v.clone() for k, v in v1.state_dict().items()}
    base = pixels(run(v1, env))
    res = run(v1, env, prompt="a photo of a cat <lora:ink:0.8>")
    assert np.abs(pixels(res) - base).max() > 0
    assert all(torch.equal(v, v1.state_dict()[k]) for k, v in before.items())
    assert res.infotexts[0].startswith("a photo of a cat <lora:ink:0.8>\n")
    # the tag itself is not encoded: the same prompt without a LoRA file gives the plain image
    missing = run(v1, env, prompt="a photo of a cat <lora:absent:0.8>")
    assert np.array_equal(pixels(missing), base)


def test_prompt_editing_is_neither_prompt_alone(v1, env):
    """cat for steps 0-2, dog for 3-5 (A1111 drops a switch at step 0: [cat:dog:0] is just dog)."""
    edited = pixels(run(v1, env, prompt="a photo of a [cat:dog:2]", steps=6))
    for plain in ("a photo of a cat", "a photo of a dog"):
        assert np.abs(pixels(run(v1, env, prompt=plain, steps=6)) - edited).max() > 0, plain
