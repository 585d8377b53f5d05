"""Loading SD3 files as users have them (tiny random weights written to a models/ folder): all-in-one
files, diffusion-only files with the encoders in models/text_encoder or models/CLIP (found by shape),
the T5 tokenizer, missing pieces, damaged files, and the model contract the engine uses."""
import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from modules.models import loader
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.state_dict import MappedFile
from tests.tiny_sd3 import make_tiny_sd3, train_t5_tokenizer, write_checkpoint, write_encoder


@pytest.fixture(scope="module")
def reference():
    return make_tiny_sd3(seed=5)


@pytest.fixture(scope="module")
def spiece(tmp_path_factory):
    return train_t5_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture
def models(tmp_path):
    (tmp_path / "Stable-diffusion").mkdir()
    return tmp_path


def load(path, **kwargs):
    """The app's load path, with the one-time tokenizer download switched off (tests are offline)."""
    from modules.models import sd3_checkpoint

    kwargs.setdefault("text_encoder_dirs", None)
    model = sd3_checkpoint.load_sd3(path, loader.read_state_dict(path), kwargs.pop("device", "cpu"),
                                    kwargs.pop("dtype", torch.float32), None, download=kwargs.pop("download", lambda: None),
                                    **kwargs)
    return model


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return set(sa) == set(sb) and all(torch.equal(sa[k].float(), sb[k].float()) for k in sa)


def test_all_in_one_file_loads_through_load_model(models, reference, spiece):
    path = write_checkpoint(models / "Stable-diffusion" / "sd3_tiny_incl_clips_t5.safetensors", reference,
                            ("clip_l", "clip_g", "t5xxl"))
    (models / "text_encoder").mkdir()
    (models / "text_encoder" / "spiece.model").write_bytes(spiece.read_bytes())
    model = loader.load_model(path)
    assert type(model).__name__ == "SD3" and model.parameterization == "flow"
    assert model.family.name == "sd3" and model.notes == []
    assert same_weights(model, reference)
    t5 = model.text_encoders.t5xxl.transformer
    assert t5.encoder.embed_tokens is t5.shared  # both keys, one tensor
    cond = model.get_learned_conditioning(["a red circle", "a blue square on the right"])
    assert cond["crossattn"].shape == (2, 77 + 77, 128) and cond["vector"].shape == (2, 128)
    assert cond["crossattn"][:, 77:].abs().sum() > 0  # T5 ran
    reference.text_encoders.t5xxl.tokenizer = model.text_encoders.t5xxl.tokenizer
    expected = reference.get_learned_conditioning(["a red circle", "a blue square on the right"])
    reference.text_encoders.t5xxl.tokenizer = None
    assert torch.equal(cond["crossattn"], expected["crossattn"]) and torch.equal(cond["vector"], expected["vector"])


@pytest.mark.parametrize("folder", ["text_encoder", "CLIP"])
def test_diffusion_only_file_takes_encoders_from_the_folders_by_shape(models, reference, spiece, folder):
    path = write_checkpoint(models / "Stable-diffusion" / "sd3.5_tiny.safetensors", reference)
    enc = models / folder
    write_encoder(enc / "ViT-L-14-text.safetensors", reference, "clip_l")  # names that say nothing
    write_encoder(enc / "bigG.safetensors", reference, "clip_g")
    write_encoder(enc / "t5_encoder.safetensors", reference, "t5xxl", torch.float16)
    (enc / "tok").mkdir()
    (enc / "tok" / "spiece.model").write_bytes(spiece.read_bytes())
    save_file({"something.weight": torch.zeros(2)}, str(enc / "unrelated.safetensors"))
    model = load(path)
    assert model.sources == {"": "sd3.5_tiny.safetensors", "clip_l": "ViT-L-14-text.safetensors",
                             "clip_g": "bigG.safetensors", "t5xxl": "t5_encoder.safetensors"}
    assert model.text_encoders.t5xxl.transformer.shared.weight.dtype == torch.float16  # storage kept
    assert model.text_encoders.clip_l.transformer.text_model.final_layer_norm.weight.dtype == torch.float32
    cond = model.get_learned_conditioning(["a green triangle"])
    assert cond["crossattn"].shape == (1, 154, 128) and cond["crossattn"].dtype == torch.float32


def test_clip_files_are_matched_by_shape_not_by_name(models, reference):
    """clip_g named like CLIP-L and the other way round: the pooled widths decide."""
    path = write_checkpoint(models / "Stable-diffusion" / "m.safetensors", reference)
    write_encoder(models / "text_encoder" / "clip_l.safetensors", reference, "clip_g")
    write_encoder(models / "text_encoder" / "clip_g.safetensors", reference, "clip_l")
    model = load(path)
    assert model.sources["clip_g"] == "clip_l.safetensors" and model.sources["clip_l"] == "clip_g.safetensors"
    assert hasattr(model.text_encoders.clip_g.transformer, "text_projection")


@pytest.mark.parametrize("present, named", [(("clip_l",), "clip_g.safetensors"), (("clip_g",), "clip_l.safetensors"),
                                            ((), "clip_l.safetensors and clip_g.safetensors")])
def test_missing_clip_names_the_file_and_folder(models, reference, present, named):
    path = write_checkpoint(models / "Stable-diffusion" / "sd3.5_medium.safetensors", reference)
    for name in present:
        write_encoder(models / "CLIP" / f"{name}.safetensors", reference, name)
    with pytest.raises(ValueError) as info:
        loader.load_model(path)
    message = str(info.value)
    assert named in message and str(models / "text_encoder") in message and "models/CLIP" not in message
    assert str(models / "CLIP") in message and "sd3.5_medium.safetensors" in message


def test_without_t5_the_t5_part_is_77_zero_tokens_and_the_status_says_so(models, reference):
    path = write_checkpoint(models / "Stable-diffusion" / "sd3_medium_incl_clips.safetensors", reference,
                            ("clip_l", "clip_g"))
    model = load(path)
    assert not hasattr(model.text_encoders, "t5xxl")
    assert len(model.notes) == 1 and "T5-XXL not found" in model.notes[0] and "t5xxl_fp16.safetensors" in model.notes[0]
    cond = model.get_learned_conditioning(["a red circle"])
    assert cond["crossattn"].shape == (1, 154, 128)
    assert torch.count_nonzero(cond["crossattn"][:, 77:]) == 0
    assert torch.count_nonzero(cond["crossattn"][:, :77, 128:]) == 0  # L|G = 128 channels: nothing padded here


def test_t5_without_tokenizer_is_not_held_and_the_message_says_which_file(models, reference):
    path = write_checkpoint(models / "Stable-diffusion" / "all.safetensors", reference, ("clip_l", "clip_g", "t5xxl"))
    model = load(path)
    assert not hasattr(model.text_encoders, "t5xxl")  # no memory for an encoder that cannot run
    assert "spiece.model" in model.notes[0] and "google/t5-v1_1-xxl" in model.notes[0]
    assert torch.count_nonzero(model.get_learned_conditioning(["x"])["crossattn"][:, 77:]) == 0


def test_t5_tokenizer_from_the_one_time_download(models, reference, spiece):
    path = write_checkpoint(models / "Stable-diffusion" / "all.safetensors", reference, ("clip_l", "clip_g", "t5xxl"))
    calls = []
    model = load(path, download=lambda: calls.append(1) or spiece)
    assert calls == [1] and model.notes == [] and model.text_encoders.uses_t5


def test_t5_tokenizer_json_trained_on_the_fly(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from modules.ldm.t5_tokenizer import T5Tokenizer
    from tests.tiny_sd3 import TOKENIZER_TEXT

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(TOKENIZER_TEXT * 3, trainers.UnigramTrainer(
        vocab_size=80, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"))
    tok.save(str(tmp_path / "tokenizer.json"))
    t5 = T5Tokenizer(tmp_path / "tokenizer.json")
    ids = t5.tokenize(["a red circle", "a blue square on the right"])
    assert ids.shape == (2, 77) and (t5.pad_id, t5.eos_id) == (0, 1)
    n = len(t5.encode("a red circle"))
    assert n > 0 and ids[0, n].item() == 1 and ids[0, n + 1:].eq(0).all() and ids[0, :n].gt(2).all()
    long = t5.tokenize(["a red circle " * 40])
    assert long.shape[1] > 77 and long[0, -1].item() == 1  # longer prompts are not cut at 77


def test_spiece_tokenizer(spiece):
    from modules.ldm.t5_tokenizer import T5Tokenizer

    t5 = T5Tokenizer(spiece)
    ids = t5.tokenize(["a red circle"])
    n = len(t5.encode("a red circle"))
    assert ids.shape == (1, 77) and ids[0, n].item() == 1 and ids[0, n + 1:].eq(0).all()


def test_a_clip_tokenizer_json_is_not_taken_for_t5(tmp_path):
    from modules.models.sd3_checkpoint import find_t5_tokenizer

    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": {"<|endoftext|>": 0}, "merges": []}}))
    assert find_t5_tokenizer([tmp_path], download=lambda: None) is None


def test_truncated_checkpoint_is_refused(models, reference):
    path = write_checkpoint(models / "Stable-diffusion" / "cut.safetensors", reference)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a valid .safetensors"):
        loader.load_model(path)


def test_lying_header_is_refused(models):
    """A header that claims more data than the file holds."""
    header = json.dumps({"model.diffusion_model.x_embedder.proj.weight":
                         {"dtype": "F32", "shape": [64, 16, 2, 2], "data_offsets": [0, 16384]}}).encode()
    path = models / "Stable-diffusion" / "lies.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    with pytest.raises(ValueError, match="truncated or not a valid .safetensors"):
        loader.load_model(path)


def test_mis_shaped_weight_is_refused(models, reference):
    sd = {k: v.clone().contiguous() for k, v in reference.state_dict().items()
          if k.startswith(("model.", "first_stage_model."))}
    sd["model.diffusion_model.joint_blocks.1.x_block.mlp.fc2.weight"] = torch.zeros(64, 100)
    path = models / "Stable-diffusion" / "bad.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="not a complete SD3 checkpoint.*fc2.weight"):
        loader.model_from_state_dict(loader.read_state_dict(path))


def test_unreadable_encoder_file_is_named(models, reference):
    path = write_checkpoint(models / "Stable-diffusion" / "m.safetensors", reference)
    write_encoder(models / "text_encoder" / "clip_l.safetensors", reference, "clip_l")
    (models / "text_encoder" / "clip_g.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match=r"clip_g.safetensors in .* cannot be read"):
        load(path)


def test_model_contract(reference):
    model = reference
    x = torch.randn(2, 16, 8, 12)
    cond = model.get_learned_conditioning(["a red circle", ""])
    out = model.apply_model(x, torch.tensor([900.0, 250.0]), cond)
    direct = model.model.diffusion_model(x, torch.tensor([900.0, 250.0]), cond["vector"], cond["crossattn"])
    assert out.shape == x.shape and torch.equal(out, direct)
    skipped = model.apply_model(x, torch.tensor([900.0, 250.0]), cond, skip_layers=[0])
    assert not torch.allclose(skipped, out)
    single = model.apply_model(x[:1], torch.tensor(900.0), {k: v[:1] for k, v in cond.items()})  # a 0-d t
    torch.testing.assert_close(single, out[:1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="'crossattn'.*'vector'"):
        model.apply_model(x, torch.tensor([1.0, 1.0]), cond["crossattn"])
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    posterior = model.encode_first_stage(image)
    z = model.get_first_stage_encoding(posterior.mode())
    assert torch.allclose(z, (posterior.mean - 0.0609) * 1.5305)
    assert torch.allclose(model.decode_first_stage(z), model.first_stage_model.decode(posterior.mean), atol=1e-5)
    assert (model.latent_channels, model.vae_scale_factor) == (16, 2)


def test_same_dtype_load_uses_the_file_in_place(models, reference):
    """A file loaded in its own dtype is not copied: the weights are views of the mapped file."""
    path = write_checkpoint(models / "Stable-diffusion" / "half.safetensors", make_tiny_sd3(seed=1, dtype=torch.float16),
                            ("clip_l", "clip_g"))
    sd = loader.read_state_dict(path)
    mapped = MappedFile(path)
    from modules.models import sd3_checkpoint

    model = sd3_checkpoint.load_sd3(path, sd, "cpu", torch.float16, None, download=lambda: None)
    inside = [any(lo <= t.data_ptr() < hi for lo, hi in mapped.ranges) for t in model.state_dict().values() if t.numel()]
    assert mapped.ranges and all(inside)


def test_catalog_shows_the_family(models, reference):
    from tests.tiny import make_tiny_model

    write_checkpoint(models / "Stable-diffusion" / "sd3_tiny.safetensors", reference, ("clip_l", "clip_g"))
    (models / "Stable-diffusion" / "broken.safetensors").write_bytes(b"junk")
    v1 = {k: v.contiguous() for k, v in make_tiny_model("tiny-v1").state_dict().items()}
    save_file(v1, str(models / "Stable-diffusion" / "tiny-v1.safetensors"))
    catalog = CheckpointCatalog([models / "Stable-diffusion"], HashCache(None))
    families = {info.name: info.family for info in catalog.refresh()}
    assert families == {"broken.safetensors": None, "sd3_tiny.safetensors": "SD3 (other sizes) (incl. CLIP-L, CLIP-G)",
                        "tiny-v1.safetensors": "SD 1.x"}


def test_model_manager_loads_sd3_and_the_status_line_says_what_is_missing(models, reference):
    from types import SimpleNamespace

    from modules.models.manager import ModelManager
    from webui.ui import top_bar

    write_checkpoint(models / "Stable-diffusion" / "sd3_tiny.safetensors", reference, ("clip_l", "clip_g"))
    catalog = CheckpointCatalog([models / "Stable-diffusion"], HashCache(None))
    manager = ModelManager(catalog)
    manager.refresh()
    loaded = manager.load("sd3_tiny")
    assert loaded.config == "sd3" and loaded.model.family.title == "SD3 (other sizes)"
    status = top_bar.model_status(SimpleNamespace(models=manager))
    assert "SD3 (other sizes)" in status and "T5-XXL not found" in status


def test_encoders_inside_other_checkpoints_are_not_taken(models, reference):
    """A v1 checkpoint or an all-in-one SD3 file beside the model holds a CLIP too: not a source."""
    other = write_checkpoint(models / "Stable-diffusion" / "other_sd3_incl_clips.safetensors", reference, ("clip_l", "clip_g"))
    path = write_checkpoint(models / "Stable-diffusion" / "sd3.5_medium.safetensors", reference)
    assert other.exists()
    with pytest.raises(ValueError, match="without its CLIP-L and CLIP-G"):
        load(path)


def test_fp8_t5_file_stays_fp8_and_encodes_close_to_full_precision(models, reference, spiece):
    path = write_checkpoint(models / "Stable-diffusion" / "sd3_medium_incl_clips.safetensors", reference,
                            ("clip_l", "clip_g"))
    write_encoder(models / "text_encoder" / "t5xxl_fp8_e4m3fn.safetensors", reference, "t5xxl", torch.float8_e4m3fn)
    model = load(path, download=lambda: spiece)
    t5 = model.text_encoders.t5xxl.transformer
    assert t5.shared.weight.dtype == torch.float8_e4m3fn and t5.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float8_e4m3fn
    ours = model.get_learned_conditioning(["a red circle on the left"])["crossattn"][:, 77:]
    reference.text_encoders.t5xxl.tokenizer = model.text_encoders.t5xxl.tokenizer
    full = reference.get_learned_conditioning(["a red circle on the left"])["crossattn"][:, 77:]
    reference.text_encoders.t5xxl.tokenizer = None
    assert torch.isfinite(ours).all() and 0 < ((ours - full).norm() / full.norm()).item() < 0.15
