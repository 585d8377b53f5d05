"""A1111's "extra networks" prompt syntax: `<kind:arg1:arg2:key=value>`, removed from the prompt.

`<lora:name:weight>` sets both multipliers; `<lora:name:te:unet>` sets the text-encoder and UNet
multipliers apart (also as `te=` / `unet=`); the UNet one defaults to the text-encoder one.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_extra_network = re.compile(r"<(\w+):([^>]+)>")


@dataclass
class ExtraNetworkParams:
    items: list[str] = field(default_factory=list)
    positional: list[str] = field(default_factory=list)
    named: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_text(cls, args: str) -> "ExtraNetworkParams":
        params = cls(items=args.split(":"))
        for item in params.items:
            key, sep, value = item.partition("=")
            if sep and "=" not in value:
                params.named[key] = value
            else:
                params.positional.append(item)
        return params


def parse_extra_networks(prompt: str) -> tuple[str, dict[str, list[ExtraNetworkParams]]]:
    """(prompt without any <kind:...> tags, {kind: [params, ...]}).

    >>> text, nets = parse_extra_networks("a cat <lora:ink:0.8>, <lora:pose:1:0.5>")
    >>> text, [p.positional for p in nets["lora"]]
    ('a cat , ', [['ink', '0.8'], ['pose', '1', '0.5']])
    """
    found: dict[str, list[ExtraNetworkParams]] = {}

    def take(m: re.Match) -> str:
        found.setdefault(m.group(1), []).append(ExtraNetworkParams.from_text(m.group(2)))
        return ""

    return _extra_network.sub(take, prompt), found


@dataclass
class LoraTag:
    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0


def _number(text: str, what: str, tag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"<lora:{tag}>: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"<lora:{tag}>: {what} must be finite")
    return value


def lora_tags(params_list: list[ExtraNetworkParams]) -> tuple[list[LoraTag], list[str]]:
    """`lora` params -> (tags, messages about malformed ones, which are left out)."""
    tags, messages = [], []
    for params in params_list:
        pos, named = params.positional, params.named
        text = ":".join(params.items)
        if not pos or not pos[0].strip():
            messages.append(f"<lora:{text}>: no LoRA name")
            continue
        try:
            te = _number(pos[1], "weight", text) if len(pos) > 1 else 1.0
            te = _number(named["te"], "te weight", text) if "te" in named else te
            unet = _number(pos[2], "unet weight", text) if len(pos) > 2 else te
            unet = _number(named["unet"], "unet weight", text) if "unet" in named else unet
        except ValueError as e:
            messages.append(str(e))
            continue
        tags.append(LoraTag(pos[0].strip(), te, unet))
    return tags, messages
