"""A1111's `modules.extra_networks` path, for extensions: the `<name:args>` prompt syntax
(ExtraNetworkParams, parse_prompt, parse_prompts) and the ExtraNetwork base class with
register_extra_network (recorded; this web UI applies its own LoRA networks and does not call
extensions' networks). activate/deactivate are not available. The extra networks browser is
issue 18's work. Nothing in the project imports this module.
"""
from __future__ import annotations

import re

from modules.script_callbacks import current_scope

re_extra_net = re.compile(r"<(\w+):([^>]+)>")


class ExtraNetworkParams:
    """One `<name:a:b:c>` tag: items are its colon-separated arguments."""

    def __init__(self, items=None):
        self.items = items or []
        self.positional = [x for x in self.items if "=" not in x]
        self.named = dict(x.split("=", 1) for x in self.items if "=" in x)

    def __eq__(self, other) -> bool:
        return isinstance(other, ExtraNetworkParams) and self.items == other.items

    def __repr__(self) -> str:
        return f"ExtraNetworkParams({self.items!r})"


class ExtraNetwork:
    def __init__(self, name: str):
        self.name = name

    def activate(self, p, params_list) -> None:
        raise NotImplementedError

    def deactivate(self, p) -> None:
        raise NotImplementedError


def parse_prompt(prompt: str) -> tuple[str, dict]:
    """The prompt without its `<name:...>` tags, and {name: [ExtraNetworkParams, ...]}."""
    res: dict[str, list] = {}

    def found(m):
        res.setdefault(m.group(1), []).append(ExtraNetworkParams(items=m.group(2).split(":")))
        return ""

    return re.sub(re_extra_net, found, prompt), res


def parse_prompts(prompts: list[str]) -> tuple[list[str], dict]:
    """A1111: the tags of the first prompt stand for the batch."""
    res, extra_data = [], None
    for prompt in prompts:
        updated, parsed = parse_prompt(prompt)
        if extra_data is None:
            extra_data = parsed
        res.append(updated)
    return res, extra_data or {}


def register_extra_network(extra_network: ExtraNetwork) -> None:
    scope = current_scope()
    note = (f"registers the extra network '{extra_network.name}', which this web UI does not call "
            "(it applies its own LoRA networks)")
    notes = scope.registry.notes.setdefault(scope.extension, [])
    if note not in notes:
        notes.append(note)
