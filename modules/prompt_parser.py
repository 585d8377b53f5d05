"""A1111's prompt language, as pure functions: text in, lists out.

Three independent passes, in the order A1111 applies them to a prompt:

1. `get_multicond_prompt_list` / `split_and`: split on ``AND``; a trailing ``:weight`` weights a
   sub-prompt (composable diffusion).
2. `get_learned_conditioning_prompt_schedules`: prompt editing ``[from:to:when]``, ``[to:when]``,
   ``[from::when]`` and alternation ``[a|b]`` turn one sub-prompt into ``[[end_step, text], ...]``.
3. `parse_prompt_attention`: emphasis ``(x)``, ``[x]``, ``(x:w)``, escapes and ``BREAK`` turn one
   scheduled text into ``[[text, weight], ...]`` while tokenizing.

Nothing here raises on user text: what does not parse is used as plain text, as in A1111. The
schedule grammar is parsed by a small hand-written recursive-descent parser (no dependency); the
comments on `_ScheduleParser` give the grammar it accepts.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "parse_prompt_attention",
    "get_learned_conditioning_prompt_schedules",
    "get_multicond_prompt_list",
    "split_and",
    "MAX_WEIGHT",
]

# Weights are clamped to +-MAX_WEIGHT so that absurd input ("((((...x:1e300))))") stays finite;
# A1111 leaves them unbounded, but nothing below this bound is changed.
MAX_WEIGHT = 1e4

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

# --------------------------------------------------------------------------------------------
# Attention (emphasis) parsing

# One token of the emphasis language per match, tried in this order.
_attention_token = re.compile(
    r"""
      (?P<escape>\\[()\[\]\\])          # \( \) \[ \] \\  -> the literal character
    | (?P<backslash>\\)                 # any other backslash is dropped (as in A1111)
    | (?P<weight>:\s*(?P<number>[+-]?[.\d]+)\s*\))   # ":1.5)" closes a round bracket with a weight
    | (?P<bracket>[()\[\]])
    | (?P<text>[^\\()\[\]:]+)
    | (?P<colon>:)
    """,
    re.X,
)
_break = re.compile(r"\s*\bBREAK\b\s*", re.S)


def _clamp(weight: float) -> float:
    if math.isnan(weight):
        return 1.0
    return max(-MAX_WEIGHT, min(MAX_WEIGHT, weight))


def _float_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_prompt_attention(text: str) -> list[list]:
    """Split `text` into [text, weight] runs; ``["BREAK", -1]`` marks a chunk break.

    >>> parse_prompt_attention('normal text')
    [['normal text', 1.0]]
    >>> parse_prompt_attention('an (important) word')
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]
    >>> parse_prompt_attention('a (b:1.5) [c]')
    [['a ', 1.0], ['b', 1.5], [' ', 1.0], ['c', 0.9090909090909091]]
    >>> parse_prompt_attention('((word))')
    [['word', 1.2100000000000002]]
    >>> parse_prompt_attention('(unbalanced')
    [['unbalanced', 1.1]]
    >>> parse_prompt_attention(r'\\(literal\\]')
    [['(literal]', 1.0]]
    >>> parse_prompt_attention('(unnecessary)(parens)')
    [['unnecessaryparens', 1.1]]
    >>> parse_prompt_attention('a BREAK b')
    [['a', 1.0], ['BREAK', -1], ['b', 1.0]]
    >>> parse_prompt_attention('(neg:-0.5)')
    [['neg', -0.5]]
    >>> parse_prompt_attention('a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).')
    [['a ', 1.0], ['house', 1.5730000000000004], [' ', 1.1], ['on', 1.0], [' a ', 1.1], ['hill', 0.55], [', sun, ', 1.1], ['sky', 1.4641000000000006], ['.', 1.1]]
    """
    state = _AttentionState()
    pos = 0
    while pos < len(text):
        pos = state.take(_attention_token.match(text, pos))
    return state.finish()


class _AttentionState:
    """The runs parsed so far and the open brackets (positions in `res` where each started)."""

    def __init__(self):
        self.res: list[list] = []
        self.round: list[int] = []
        self.square: list[int] = []

    def multiply_range(self, start: int, multiplier: float) -> None:
        for item in self.res[start:]:
            item[1] = _clamp(item[1] * multiplier)

    def add_text(self, chunk: str) -> None:
        for i, part in enumerate(_break.split(chunk)):
            if i > 0:
                self.res.append(["BREAK", -1])
            self.res.append([part, 1.0])

    def close(self, stack: list[int], multiplier: float) -> bool:
        if not stack:
            return False
        self.multiply_range(stack.pop(), multiplier)
        return True

    def take(self, m: re.Match) -> int:
        """Handle one token; returns where the next one starts."""
        kind, token = m.lastgroup, m.group(0)
        if kind == "escape":
            self.res.append([token[1], 1.0])
        elif kind == "backslash":
            self.res.append(["", 1.0])
        elif kind == "weight" and self.round:
            weight = _float_or_none(m.group("number"))
            if weight is None:  # ":1.2.3)" is not a number: the colon is text, rescan after it
                self.add_text(":")
                return m.start() + 1
            self.close(self.round, weight)
        elif token in "([":
            (self.round if token == "(" else self.square).append(len(self.res))
        elif not (token == ")" and self.close(self.round, ROUND_MULTIPLIER)) and \
                not (token == "]" and self.close(self.square, SQUARE_MULTIPLIER)):
            self.add_text(token)
        return m.end()

    def finish(self) -> list[list]:
        for start in self.round:
            self.multiply_range(start, ROUND_MULTIPLIER)
        for start in self.square:
            self.multiply_range(start, SQUARE_MULTIPLIER)
        return _merge_equal_runs(self.res or [["", 1.0]])


def _merge_equal_runs(res: list[list]) -> list[list]:
    merged = [res[0]]
    for item in res[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return merged


# --------------------------------------------------------------------------------------------
# AND (composable diffusion)

_and = re.compile(r"\bAND\b")
_and_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """The AND sub-prompts of one prompt with their weights (default 1).

    Trailing whitespace and the ``:weight`` are removed from each sub-prompt's text.

    >>> split_and("a cat AND a dog:0.5")
    [('a cat', 1.0), (' a dog', 0.5)]
    >>> split_and("a cat :1.5 AND dog: -2")
    [('a cat', 1.5), (' dog', -2.0)]
    >>> split_and("ANDROID AND")
    [('ANDROID', 1.0), ('', 1.0)]
    """
    res = []
    for subprompt in _and.split(prompt):
        m = _and_weight.search(subprompt)
        text, weight = m.groups() if m is not None else (subprompt, None)
        value = _float_or_none(weight) if weight is not None else None
        res.append((text, _clamp(value) if value is not None else 1.0))
    return res


def get_multicond_prompt_list(prompts: list[str]):
    """A1111's AND splitter for a batch: (indexes, flat_list, flat_index).

    indexes[i] lists (position in flat_list, weight) for prompt i; equal sub-prompt texts share
    one position, so each is encoded once.

    >>> get_multicond_prompt_list(["a AND b:2", "b"])
    ([[(0, 1.0), (1, 2.0)], [(2, 1.0)]], ['a', ' b', 'b'], {'a': 0, ' b': 1, 'b': 2})
    """
    res_indexes: list[list[tuple[int, float]]] = []
    flat_list: list[str] = []
    flat_index: dict[str, int] = {}
    for prompt in prompts:
        indexes = []
        for text, weight in split_and(prompt):
            if text not in flat_index:
                flat_index[text] = len(flat_list)
                flat_list.append(text)
            indexes.append((flat_index[text], weight))
        res_indexes.append(indexes)
    return res_indexes, flat_list, flat_index


# --------------------------------------------------------------------------------------------
# Prompt editing and alternation

@dataclass
class _Scheduled:
    before: list | None  # None: "[to:when]" adds `to` at `when`
    after: list
    when: str            # the number as written; resolved to a step by _resolve_steps
    step: int = 0


@dataclass
class _Alternate:
    options: list[list]


class _ParseFailed(Exception):
    pass


_number = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\]")
_plain = re.compile(r"(?:[^\\\[\]():|]|\\.)+")  # `.` excludes a newline: "\<newline>" is invalid
_whitespace = re.compile(r"\s+")
_stray = re.compile(r"[\[\]():]")


class _ScheduleParser:
    """Recursive descent over this grammar (Earley-free; ambiguities resolved as A1111's lark does):

        start     := (construct | plain | stray-bracket-or-colon)*      # top level is lenient
        seq       := (construct | plain)*                               # inside brackets: strict
        construct := "(" seq ")" | "(" seq ":" seq ")" | "[" seq "]"    # emphasis: kept as text
                   | "[" [seq ":"] seq ":" NUMBER "]"                   # prompt editing
                   | "[" seq ("|" seq)+ "]"                             # alternation
        plain     := (any char but \\ [ ] ( ) : |  or  \\ followed by a char)+

    A `|` outside an alternation, or a trailing backslash, makes the whole prompt unparseable.
    Nodes are strings (text kept verbatim), lists (sequences), _Scheduled or _Alternate.
    """

    def __init__(self, text: str):
        self.text = text
        self.memo: dict[int, tuple[object, int] | None] = {}

    def parse(self) -> list:
        text, pos, out = self.text, 0, []
        while pos < len(text):
            node, end = self.construct(pos) if text[pos] in "([" else (None, pos)
            if node is not None:
                out.append(node)
                pos = end
                continue
            m = _plain.match(text, pos) or _stray.match(text, pos)
            if m is None:
                raise _ParseFailed  # "|" outside an alternation, or a dangling backslash
            out.append(m.group(0))
            pos = m.end()
        return out

    def seq(self, pos: int) -> tuple[list, int]:
        text, out = self.text, []
        while pos < len(text):
            if text[pos] in "([":
                node, end = self.construct(pos)
                if node is None:
                    raise _ParseFailed
                out.append(node)
                pos = end
                continue
            m = _plain.match(text, pos)
            if m is None:
                if text[pos] == "\\":
                    raise _ParseFailed
                break  # one of ] ) : | ends the sequence
            out.append(m.group(0))
            pos = m.end()
        return out, pos

    def construct(self, pos: int) -> tuple[object, int]:
        """The bracket construct starting at `pos`, or (None, pos) when there is none."""
        if pos not in self.memo:
            try:
                self.memo[pos] = self._construct(pos)
            except _ParseFailed:
                self.memo[pos] = None
        found = self.memo[pos]
        return found if found is not None else (None, pos)

    def _construct(self, pos: int) -> tuple[object, int]:
        text = self.text
        opening = text[pos]
        first, pos = self.seq(pos + 1)
        nxt = text[pos] if pos < len(text) else ""
        if opening == "(":
            if nxt == ")":
                return ["(", first, ")"], pos + 1
            if nxt == ":":
                second, pos = self.seq(pos + 1)
                if text.startswith(")", pos):
                    return ["(", first, ":", second, ")"], pos + 1
            raise _ParseFailed
        if nxt == "]":
            return ["[", first, "]"], pos + 1
        if nxt == "|":
            options = [first]
            while text.startswith("|", pos):
                option, pos = self.seq(pos + 1)
                options.append(option)
            if text.startswith("]", pos):
                return _Alternate(options), pos + 1
            raise _ParseFailed
        if nxt == ":":
            m = _number.match(text, pos + 1)
            if m:  # "[to:when]"
                return _Scheduled(None, first, m.group(1)), m.end()
            second, pos = self.seq(pos + 1)
            if text.startswith(":", pos):
                m = _number.match(text, pos + 1)
                if m:  # "[from:to:when]"
                    return _Scheduled(first, second, m.group(1)), m.end()
        raise _ParseFailed


def _walk(nodes):
    """Every _Scheduled and _Alternate in the tree, in inactive branches too."""
    stack = [nodes]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, _Scheduled):
            yield node
            stack.extend([node.before or [], node.after])
        elif isinstance(node, _Alternate):
            yield node
            stack.extend(node.options)


def _text_at(nodes, step: int) -> str:
    out: list[str] = []
    stack = [nodes]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, _Scheduled):
            stack.append((node.before or []) if step <= node.step else node.after)
        else:
            stack.append(node.options[(step - 1) % len(node.options)])
    return "".join(out)


def _when_to_step(when: str, steps: int, int_offset: int, flt_offset: float, old: bool) -> int:
    value = float(when)
    if old:
        value = value * steps if value < 1 else value
    elif "." in when:
        value = (value - flt_offset) * steps
    else:
        value = value - int_offset
    if not math.isfinite(value):
        return steps if value > 0 else -1
    return min(steps, int(value))


def get_learned_conditioning_prompt_schedules(prompts, steps, hires_steps=None, use_old_scheduling=False):
    """Per prompt, the list of [end_step, text]: text applies while current_step <= end_step.

    `when` with a "." is a fraction of the steps, otherwise an absolute step. For a hires pass
    (hires_steps given) fractions count from 1.0 and integers from `steps`, so "[a:b:1.5]" switches
    halfway through the second pass; use_old_scheduling restores A1111's pre-1.6 rule
    (values below 1 are fractions).

    >>> g = lambda p: get_learned_conditioning_prompt_schedules([p], 10)[0]
    >>> g("test")
    [[10, 'test']]
    >>> g("a [b:3]")
    [[3, 'a '], [10, 'a b']]
    >>> g("a [b: 3]")
    [[3, 'a '], [10, 'a b']]
    >>> g("a [[[b]]:2]")
    [[2, 'a '], [10, 'a [[b]]']]
    >>> g("[(a:2):3]")
    [[3, ''], [10, '(a:2)']]
    >>> g("a [b : c : 1] d")
    [[1, 'a b  d'], [10, 'a  c  d']]
    >>> g("a[b:[c:d:2]:1]e")
    [[1, 'abe'], [2, 'ace'], [10, 'ade']]
    >>> g("a [unbalanced")
    [[10, 'a [unbalanced']]
    >>> g("a [b:.5] c")
    [[5, 'a  c'], [10, 'a b c']]
    >>> g("((a][:b:c [d:3]")
    [[3, '((a][:b:c '], [10, '((a][:b:c d']]
    >>> g("[a|(b:1.1)]")[:3]
    [[1, 'a'], [2, '(b:1.1)'], [3, 'a']]
    >>> g("[fe|||]male")[:5]
    [[1, 'female'], [2, 'male'], [3, 'male'], [4, 'male'], [5, 'female']]
    >>> g("a|b [c:2]")  # a "|" outside [..|..] makes the prompt plain text
    [[10, 'a|b [c:2]']]
    >>> get_learned_conditioning_prompt_schedules(["a [b:1.5] c"], 10, 10)[0]
    [[5, 'a  c'], [10, 'a b c']]
    """
    if hires_steps is None or use_old_scheduling:
        int_offset, flt_offset = 0, 0.0
    else:
        int_offset, flt_offset, steps = steps, 1.0, hires_steps

    def get_schedule(prompt: str) -> list[list]:
        try:
            tree = _ScheduleParser(prompt).parse()
        except (_ParseFailed, RecursionError):
            return [[steps, prompt]]
        ends = {steps}
        for node in _walk(tree):
            if isinstance(node, _Alternate):
                ends.update(range(1, steps + 1))
            else:
                node.step = _when_to_step(node.when, steps, int_offset, flt_offset, use_old_scheduling)
                if node.step >= 1:
                    ends.add(node.step)
        return [[end, _text_at(tree, end)] for end in sorted(ends)]

    cache = {prompt: get_schedule(prompt) for prompt in set(prompts)}
    return [cache[prompt] for prompt in prompts]


def __getattr__(name: str):
    """A1111's SdConditioning and conditioning namedtuples for extensions:
    modules/plugins/compat/prompts.py; the engine never uses them."""
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.plugins.compat import prompts as a1111
    return a1111.attribute(name)
