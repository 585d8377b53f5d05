"""Textual inversion: file formats, width checks, safe loading, expansion in prompts, chunk boundaries."""
import hashlib
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from modules.conditioning import PromptEncoder
from modules.embeddings import EmbeddingDatabase, load_embedding
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


def vectors(n, width=32, seed=0):
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_formats_load_and_mismatched_width_is_skipped(tmp_path, v1):
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors(3)}, "name": "a1111", "step": 500},
               tmp_path / "a1111.pt")
    torch.save({"string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors(2))})},
               tmp_path / "original.pt")
    save_file({"emb_params": vectors(4)}, str(tmp_path / "safe.safetensors"))
    torch.save({"<concept>": vectors(1)[0]}, tmp_path / "concept.bin")
    save_file({"emb_params": vectors(2, width=64)}, str(tmp_path / "wide.safetensors"))
    save_file({"clip_g": vectors(1, 64), "clip_l": vectors(1)}, str(tmp_path / "xl.safetensors"))
    (tmp_path / "sub").mkdir()
    save_file({"emb_params": vectors(1)}, str(tmp_path / "sub" / "nested.safetensors"))
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"string_to_param": {"*": Evil()}}, f)

    db = EmbeddingDatabase([tmp_path]).load(32, v1.cond_stage_model.tokenizer)
    assert {n: e.vectors for n, e in db.word_embeddings.items()} == {
        "a1111": 3, "original": 2, "safe": 4, "concept": 1, "nested": 1}
    assert set(db.skipped) == {"wide", "xl", "evil"}
    assert "width 64" in db.skipped["wide"] and "safely" in db.skipped["evil"]
    assert db.word_embeddings["a1111"].step == 500
    torch.testing.assert_close(db.word_embeddings["safe"].vec, vectors(4))
    digest = hashlib.sha256((tmp_path / "safe.safetensors").read_bytes()).hexdigest()
    assert db.word_embeddings["safe"].shorthash == digest[:12]
    assert db.as_api()["loaded"]["safe"]["vectors"] == 4 and "wide" in db.as_api()["skipped"]


def test_load_embedding_names_the_problem(tmp_path):
    torch.save({"something": 1, "else": 2}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="unrecognised embedding format"):
        load_embedding(tmp_path / "odd.pt")


def test_refresh_sees_new_and_changed_files(tmp_path, v1):
    tok = v1.cond_stage_model.tokenizer
    db = EmbeddingDatabase(tmp_path).load(32, tok)
    assert db.names() == []
    save_file({"emb_params": vectors(2)}, str(tmp_path / "late.safetensors"))
    assert db.load(32, tok).names() == ["late"]
    save_file({"emb_params": vectors(5)}, str(tmp_path / "late.safetensors"))
    assert db.load(32, tok).word_embeddings["late"].vectors == 5
    assert db.load(64, tok).names() == [] and "late" in db.skipped  # another model width


def manual_encoding(model, ids, placements):
    """Token ids [77] with embedding vectors put at the given positions, encoded by hand."""
    clip = model.cond_stage_model
    embeds = clip.embed_tokens(torch.tensor([ids]))
    for position, vec in placements:
        embeds[0, position:position + len(vec)] = vec
    return clip.encode_embeddings(embeds)


def test_embedding_expands_to_its_vectors_in_the_prompt(tmp_path, v1):
    save_file({"emb_params": vectors(3)}, str(tmp_path / "inkstyle.safetensors"))
    db = EmbeddingDatabase(tmp_path)
    enc = PromptEncoder(v1, embeddings=db)
    tok = enc.tokenizer
    assert enc.count_tokens("a photo in inkstyle") == (6, 75)  # a photo in + 3 vectors
    with torch.no_grad():
        z = enc.get_learned_conditioning(["a photo in (inkstyle:1.0)"])
        ids = [49406] + tok.encode("a photo in") + [0] * 3 + [49407] * 70
        expected = manual_encoding(v1, ids, [(4, vectors(3))])
    torch.testing.assert_close(z, expected)
    assert enc.extra_generation_params()["TI hashes"] == f"inkstyle: {db.word_embeddings['inkstyle'].shorthash}"
    # without the database the name is just words
    with torch.no_grad():
        assert not torch.allclose(PromptEncoder(v1).get_learned_conditioning(["a photo in inkstyle"]), z)


def test_embedding_never_straddles_two_chunks(tmp_path, v1):
    save_file({"emb_params": vectors(3)}, str(tmp_path / "inkstyle.safetensors"))
    enc = PromptEncoder(v1, embeddings=EmbeddingDatabase(tmp_path), comma_padding_backtrack=0)
    chunks, count = enc.tokenize_line("cat " * 73 + "inkstyle")
    assert len(chunks) == 2 and count == 75 + 3
    assert chunks[0].fixes == [] and chunks[0].tokens[74:] == [49407] * 3  # 73 cats, then padding
    assert [(offset, emb.name) for offset, emb in chunks[1].fixes] == [(0, "inkstyle")]
    with torch.no_grad():
        z = enc.get_learned_conditioning(["cat " * 73 + "inkstyle"])
        expected = manual_encoding(v1, [49406, 0, 0, 0] + [49407] * 73, [(1, vectors(3))])
    torch.testing.assert_close(z[0, 77:], expected[0])
