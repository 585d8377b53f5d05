"""A1111's prompt language: the reference examples, nesting, alternation, AND, escapes, robustness."""
import doctest
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modules import prompt_parser
from modules.prompt_parser import (
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    parse_prompt_attention,
    split_and,
)


def test_doctests():
    result = doctest.testmod(prompt_parser)
    assert result.attempted > 20 and result.failed == 0


# ---- attention: every row of the reference table, then our own cases -------------------------

@pytest.mark.parametrize("text, expected", [
    ("a (b:1.5) [c]", [["a ", 1.0], ["b", 1.5], [" ", 1.0], ["c", 0.9090909090909091]]),
    ("(word)", [["word", 1.1]]),
    ("((word))", [["word", 1.2100000000000002]]),
    ("[word]", [["word", 0.9090909090909091]]),
    (r"\(word\)", [["(word)", 1.0]]),
    ("a BREAK b", [["a", 1.0], ["BREAK", -1], ["b", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
])
def test_attention_reference_table(text, expected):
    assert parse_prompt_attention(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("", [["", 1.0]]),
    ("a (b (c:2) d) e", [["a ", 1.0], ["b ", 1.1], ["c", 2.2], [" d", 1.1], [" e", 1.0]]),
    ("[[a]]", [["a", 1 / 1.1 / 1.1]]),
    ("(a:-1)", [["a", -1.0]]),
    ("(a: +0.5 )", [["a", 0.5]]),
    (r"\[x\] \\ y", [["[x] \\ y", 1.0]]),
    (r"a\b", [["ab", 1.0]]),                      # a lone backslash is dropped, as in A1111
    ("a:b", [["a:b", 1.0]]),
    ("x:1.5) y", [["x:1.5) y", 1.0]]),             # weight syntax without "(" is text
    ("a) b] c", [["a) b] c", 1.0]]),               # unmatched closers are text
    ("(a:1.2.3)", [["a:1.2.3", 1.1]]),             # not a number: the colon is text
    ("abreak BREAKfast BREAK", [["abreak BREAKfast", 1.0], ["BREAK", -1], ["", 1.0]]),
    ("a break b", [["a break b", 1.0]]),           # BREAK is uppercase only
    ("[a BREAK b]", [["a", 1 / 1.1], ["BREAK", -1 / 1.1], ["b", 1 / 1.1]]),
])
def test_attention_own_cases(text, expected):
    got = parse_prompt_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_attention_nesting_multiplies_in_closing_order():
    # A1111 multiplies inner brackets first: the float results depend on that order
    assert parse_prompt_attention("(((house:1.3)))")[0][1] == 1.3 * 1.1 * 1.1


# ---- schedules ---------------------------------------------------------------------------------

def sched(prompt, steps=10, hires=None, old=False):
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires, old)[0]


def test_schedule_reference_examples():
    assert sched("a [b:3]") == [[3, "a "], [10, "a b"]]
    assert sched("a [b:.5] c") == [[5, "a  c"], [10, "a b c"]]


@pytest.mark.parametrize("prompt, expected", [
    ("[a:b:3]", [[3, "a"], [10, "b"]]),
    ("[a::3] c", [[3, "a c"], [10, " c"]]),
    ("[a:b:0.25]", [[2, "a"], [10, "b"]]),         # int(2.5): the switch happens after step 2
    ("[a:b:20]", [[10, "a"]]),                     # beyond the end: never switches
    ("[a:b:0]", [[10, "b"]]),
    ("[a:b:-2]", [[10, "b"]]),
    ("[a:b:1e0]", [[1, "a"], [10, "b"]]),
    ("[[a:b:2]:c:5]", [[2, "a"], [5, "b"], [10, "c"]]),
    ("[a:[b|c]:8]", [[i, "a"] for i in range(1, 9)] + [[9, "b"], [10, "c"]]),
    ("(x [a:b:5]:1.2)", [[5, "(x a:1.2)"], [10, "(x b:1.2)"]]),
    (r"\[a:b:5\]", [[10, r"\[a:b:5\]"]]),          # escaped: plain text
    ("[a:b:c]", [[10, "[a:b:c]"]]),               # not a step: plain text
    ("a [b:3] | c", [[10, "a [b:3] | c"]]),       # a stray "|": the whole prompt is plain text
    ("", [[10, ""]]),
])
def test_schedule_own_cases(prompt, expected):
    assert sched(prompt) == expected


def test_alternation_switches_every_step():
    assert [t for _, t in sched("[cat|dog] photo", 4)] == ["cat photo", "dog photo", "cat photo", "dog photo"]
    assert [t for _, t in sched("[a|b|c]", 5)] == ["a", "b", "c", "a", "b"]
    assert [t for _, t in sched("[(a:1.2)|[b]]", 2)] == ["(a:1.2)", "[b]"]


def test_hires_schedule_counts_from_the_first_pass():
    assert sched("a [b:1.5] c", 10, 20) == [[10, "a  c"], [20, "a b c"]]
    assert sched("a [b:15] c", 10, 20) == [[5, "a  c"], [20, "a b c"]]   # absolute steps minus the first pass
    assert sched("a [b:.5] c", 10, 20) == [[20, "a b c"]]                # switched during the first pass
    # A1111's pre-1.6 rule ignores hires_steps (the caller passes the pass's own steps)
    assert sched("a [b:.5] c", 10, 20, old=True) == [[5, "a  c"], [10, "a b c"]]


def test_schedules_for_a_batch_keep_order_and_share_results():
    out = get_learned_conditioning_prompt_schedules(["x", "[a:b:2]", "x"], 4)
    assert out == [[[4, "x"]], [[2, "a"], [4, "b"]], [[4, "x"]]]


def test_deep_nesting_and_long_prompts_do_not_raise():
    deep = "[" * 5000 + "a:b:2" + "]" * 5000
    assert sched(deep) == [[10, deep]]
    long = "(word:1.1), [a:b:3] " * 500
    out = sched(long)
    assert [end for end, _ in out] == [3, 10] and out[1][1] == "(word:1.1), b " * 500
    assert parse_prompt_attention("(" * 3000 + "x")[0][1] == prompt_parser.MAX_WEIGHT


# ---- AND ---------------------------------------------------------------------------------------

def test_and_reference_example():
    # the reference writes ("a cat ", 1.0): A1111's regex also strips the space before AND
    assert split_and("a cat AND a dog:0.5") == [("a cat", 1.0), (" a dog", 0.5)]


def test_and_weights_and_batches():
    assert split_and("a:1.2 AND b : -0.5 AND c") == [("a", 1.2), (" b", -0.5), (" c", 1.0)]
    assert split_and("ANDY and BAND") == [("ANDY and BAND", 1.0)]         # whole word, uppercase
    assert split_and("(x:1.5) AND y") == [("(x:1.5)", 1.0), (" y", 1.0)]  # emphasis is not an AND weight
    indexes, flat, _ = get_multicond_prompt_list(["a AND b", "b AND a:3"])
    assert flat == ["a", " b", "b", " a"]
    assert indexes == [[(0, 1.0), (1, 1.0)], [(2, 1.0), (3, 3.0)]]


# ---- robustness --------------------------------------------------------------------------------

prompt_alphabet = st.sampled_from(list("ab ,:|()[]\\.0123456789-+e\n") + ["AND", "BREAK", ":1.5)", "(x:", "[a:b:"])
prompt_text = st.one_of(st.text(max_size=60), st.lists(prompt_alphabet, max_size=40).map("".join))


@settings(max_examples=400, deadline=None)
@given(prompt_text, st.integers(min_value=1, max_value=40), st.one_of(st.none(), st.integers(1, 40)))
def test_parser_never_raises_and_weights_are_finite(text, steps, hires):
    for _, weight in parse_prompt_attention(text):
        assert math.isfinite(weight)
    for sub, weight in split_and(text):
        assert math.isfinite(weight)
        schedule = get_learned_conditioning_prompt_schedules([sub], steps, hires)[0]
        ends = [end for end, _ in schedule]
        assert ends == sorted(set(ends)) and ends[-1] == (hires or steps)
        for _, scheduled_text in schedule:
            assert all(math.isfinite(w) for _, w in parse_prompt_attention(scheduled_text))
