"""Prompt -> conditioning on tiny v1/v2 models: chunks, BREAK, pad-to-comma, emphasis, schedules, AND."""
import time

import pytest
import torch

from modules.conditioning import PromptEncoder, get_learned_conditioning, make_conditioner
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


@pytest.fixture(scope="module")
def v2():
    return make_tiny_model("tiny-v2")


def encode(model, texts, **kw):
    with torch.no_grad():
        return PromptEncoder(model, **kw).get_learned_conditioning(texts)


def plain(model, text):
    """The model's own single-chunk encoding (its tokenizer, BOS/EOS, its padding)."""
    with torch.no_grad():
        return model.get_learned_conditioning([text])


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_short_prompt_matches_the_models_own_encoding(name, request):
    model = request.getfixturevalue(name)
    z = encode(model, ["a photo of a cat"])
    assert z.shape == (1, 77, 32)
    torch.testing.assert_close(z, plain(model, "a photo of a cat"), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["v1", "v2"])
def test_200_tokens_make_three_chunks_encoded_separately(name, request):
    model = request.getfixturevalue(name)
    enc = PromptEncoder(model)
    prompt = "cat " * 200
    with torch.no_grad():
        cond = enc.scheduled([prompt], steps=10)[0].at(0)
    assert cond.shape == (231, 32)
    assert enc.count_tokens(prompt) == (200, 225)
    torch.testing.assert_close(cond[:77], plain(model, "cat " * 75)[0], rtol=0, atol=0)
    torch.testing.assert_close(cond[77:154], plain(model, "cat " * 75)[0], rtol=0, atol=0)
    torch.testing.assert_close(cond[154:], plain(model, "cat " * 50)[0], rtol=0, atol=0)


def test_v2_pads_with_zero_after_the_first_eos(v2):
    chunk = PromptEncoder(v2).tokenize_line("a cat")[0][0]
    assert len(chunk.tokens) == 77 and chunk.tokens[0] == 49406 and chunk.tokens[3:] == [49407] * 74
    # the tokens are padded with EOS and set to 0 when encoding, exactly as the model pads
    torch.testing.assert_close(encode(v2, ["a cat"]), plain(v2, "a cat"), rtol=0, atol=0)
    assert not torch.equal(encode(v2, ["a cat"]), plain(make_tiny_model("tiny-v1"), "a cat"))


def test_break_starts_a_new_chunk(v1):
    chunks, count = PromptEncoder(v1).tokenize_line("a red cat BREAK a dog")
    assert len(chunks) == 2 and count == 75 + 2
    z = encode(v1, ["a red cat BREAK a dog"])
    torch.testing.assert_close(z[0, :77], plain(v1, "a red cat")[0], rtol=0, atol=0)
    torch.testing.assert_close(z[0, 77:], plain(v1, "a dog")[0], rtol=0, atol=0)


def test_pad_to_comma_moves_the_words_after_the_last_comma(v1):
    prompt = "cat " * 70 + ", " + "dog " * 10
    cat, comma, dog = (PromptEncoder(v1).tokenizer.encode(w)[0] for w in ("cat", ",", "dog"))
    chunks, _ = PromptEncoder(v1).tokenize_line(prompt)
    assert chunks[0].tokens[1:72] == [cat] * 70 + [comma] and chunks[0].tokens[72:] == [49407] * 5
    assert chunks[1].tokens[1:11] == [dog] * 10
    chunks, _ = PromptEncoder(v1, comma_padding_backtrack=0).tokenize_line(prompt)
    assert chunks[0].tokens[1:76] == [cat] * 70 + [comma] + [dog] * 4
    far = "cat " * 50 + ", " + "dog " * 40  # the comma is 25 tokens before the end: nothing moves
    chunks, _ = PromptEncoder(v1).tokenize_line(far)
    assert chunks[0].tokens[52:76] == [dog] * 24


def test_emphasis_modes(v1):
    text, same_tokens = "a photo of a (cat:1.5) [dog]", "a photo of a cat dog"
    base = encode(v1, [same_tokens])
    multipliers = torch.ones(77)
    multipliers[5], multipliers[6] = 1.5, 1 / 1.1  # BOS a photo of a cat dog
    no_norm = encode(v1, [text], emphasis="No norm")
    torch.testing.assert_close(no_norm, base * multipliers[None, :, None])
    original = encode(v1, [text], emphasis="Original")
    torch.testing.assert_close(original.mean(), base.mean())
    torch.testing.assert_close(original, no_norm * (base.mean() / no_norm.mean()))
    torch.testing.assert_close(encode(v1, [text], emphasis="Ignore"), base, rtol=0, atol=0)
    literal = encode(v1, [text], emphasis="None")   # brackets are tokens
    assert PromptEncoder(v1, emphasis="None").count_tokens(text)[0] > PromptEncoder(v1).count_tokens(text)[0]
    assert not torch.allclose(literal, base)


def test_unknown_emphasis_is_a_clear_error(v1):
    with pytest.raises(ValueError, match="emphasis"):
        PromptEncoder(v1, emphasis="Strong")


def test_options_object_supplies_the_settings(v1):
    class Opts:
        emphasis = "No norm"
        CLIP_stop_at_last_layers = 2
        comma_padding_backtrack = 5

    enc = make_conditioner()(v1, Opts())
    assert (enc.emphasis, enc.clip_skip, enc.comma_padding_backtrack) == ("No norm", 2, 5)
    skipped = encode(v1, ["a cat"], clip_skip=2)
    assert not torch.allclose(skipped, encode(v1, ["a cat"]))
    with torch.no_grad():
        torch.testing.assert_close(enc.get_learned_conditioning(["a cat"]), skipped, rtol=0, atol=0)


def test_prompt_editing_changes_the_cond_at_the_right_step(v1):
    enc = PromptEncoder(v1)
    with torch.no_grad():
        sc = enc.scheduled(["a [cat:dog:4] photo"], steps=10)[0]
    assert sc.change_steps() == [4]
    torch.testing.assert_close(sc.at(4), plain(v1, "a cat photo")[0], rtol=0, atol=0)
    torch.testing.assert_close(sc.at(5), plain(v1, "a dog photo")[0], rtol=0, atol=0)
    with torch.no_grad():
        alt = enc.scheduled(["[cat|dog]"], steps=4)[0]
    # entries end at steps 1, 2, 3, 4 and steps count from 0, so A1111 shows "cat" at steps 0 and 1
    assert [torch.equal(alt.at(s), plain(v1, "cat")[0]) for s in range(4)] == [True, True, False, True]


def test_schedule_texts_of_different_lengths_are_padded_with_empty_chunks(v1):
    with torch.no_grad():
        sc = PromptEncoder(v1).scheduled(["[" + "cat " * 80 + ":dog:3]"], steps=6)[0]
    first, second = sc.at(0), sc.at(5)
    assert first.shape == second.shape == (154, 32)
    torch.testing.assert_close(second[77:], plain(v1, "")[0], rtol=0, atol=0)


def test_and_gives_weighted_subprompts_and_the_cache_encodes_each_text_once(v1):
    enc = PromptEncoder(v1)
    with torch.no_grad():
        mc = enc.multicond(["a cat AND a dog:0.5", "a cat AND a dog:0.5"], steps=10)
        negatives = enc.scheduled(["blurry", "blurry"], steps=10)
    assert [w for _, w in mc.batch[0]] == [1.0, 0.5]
    torch.testing.assert_close(mc.batch[0][1][0].at(0), plain(v1, "a dog")[0], rtol=0, atol=0)
    assert mc.batch[0][0][0] is mc.batch[1][0][0] and negatives[0] is negatives[1]
    conds, index = mc.at(0)
    assert len(conds) == 4 and index == [[(0, 1.0), (1, 0.5)], [(2, 1.0), (3, 0.5)]]


def test_token_counter(v1):
    enc = PromptEncoder(v1)
    assert enc.count_tokens("") == (0, 75)
    assert enc.count_tokens("a cat <lora:ink:0.5>") == (2, 75)
    assert enc.count_tokens("a BREAK b") == (76, 150)
    assert enc.count_tokens("[cat|a very long dog]") == (4, 75)   # the longest scheduled text
    assert enc.count_tokens("a AND b c d") == (3, 75)               # the longest AND sub-prompt


def test_ten_thousand_character_prompt_is_chunked_not_rejected(v1):
    prompt = ("a (detailed:1.2) photo of a cat, " * 400)[:10_000]
    start = time.perf_counter()
    z = get_learned_conditioning(v1, [prompt])
    elapsed = time.perf_counter() - start
    enc = PromptEncoder(v1)
    used, limit = enc.count_tokens(prompt)
    assert used > 2000 and z.shape == (1, limit // 75 * 77, 32)
    # every chunk went through the encoder on its own (it refuses more than 77 tokens per call)
    assert torch.isfinite(z).all() and elapsed < 20
