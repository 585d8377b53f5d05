"""Prompts of a job: styles -> extra-network tags (LoRA) -> conditioning, with per-job caching.

The conditioning comes from the encoder that `p.env.conditioner(model, opts)` makes; by default
modules.conditioning's PromptEncoder (emphasis, 75-token chunks, embeddings, clip skip, prompt
editing, AND).
"""
from __future__ import annotations

import contextlib

import torch

from modules import conditioning


def make_encoder(p):
    factory = p.env.conditioner if p.env.conditioner is not None else conditioning.make_conditioner()
    encoder = factory(p.sd_model, p.opts)
    encoder.interrupt = p.job  # a long prompt is encoded chunk by chunk: Interrupt stops it in between
    return encoder


def note_extra_params(p, source) -> None:
    """Infotext fields and messages of an encoder / LoRA report (TI hashes, Lora hashes, Emphasis)."""
    params = getattr(source, "extra_generation_params", None)
    if callable(params):
        p.extra_generation_params.update(params())
    for message in getattr(source, "messages", None) or []:
        p.add_warning(message)


def _as_list(value, n: int, what: str) -> list[str]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what}: got a list of {len(value)} prompts for {n} images (batch count x batch size)")
        return [str(v) for v in value]
    return [str(value or "")] * n


def setup_prompts(p) -> None:
    """all_prompts / all_negative_prompts (one per image), styles applied (A1111's setup_prompts)."""
    n = p.n_iter * p.batch_size
    prompts = _as_list(p.prompt, n, "prompt")
    negatives = _as_list(p.negative_prompt, n, "negative prompt")
    styles = p.env.styles
    if styles is not None and p.styles:
        prompts = [styles.apply_styles_to_prompt(x, p.styles) for x in prompts]
        negatives = [styles.apply_negative_styles_to_prompt(x, p.styles) for x in negatives]
    p.all_prompts, p.all_negative_prompts = prompts, negatives
    if hasattr(p, "all_hr_prompts") and getattr(p, "enable_hr", False):
        hr = p.hr_prompt or None
        hr_neg = p.hr_negative_prompt or None
        p.all_hr_prompts = _as_list(hr, n, "hires prompt") if hr else list(prompts)
        p.all_hr_negative_prompts = _as_list(hr_neg, n, "hires negative prompt") if hr_neg else list(negatives)
        if styles is not None and p.styles:
            if hr:
                p.all_hr_prompts = [styles.apply_styles_to_prompt(x, p.styles) for x in p.all_hr_prompts]
            if hr_neg:
                p.all_hr_negative_prompts = [styles.apply_negative_styles_to_prompt(x, p.styles)
                                             for x in p.all_hr_negative_prompts]


def activate_extra_networks(p, prompts: list[str]):
    """Strip `<lora:...>` tags from the batch's prompts; returns (prompts, context manager that
    applies the networks while the batch samples)."""
    apply = p.env.extra_networks
    if apply is None or p.disable_extra_networks:
        return prompts, contextlib.nullcontext()
    return apply(p.sd_model, prompts)


class CondCache:
    """Conds of the last batch, reused when the next batch has the same prompts (A1111 does this too)."""

    def __init__(self):
        self._key = None
        self._value = None

    def get(self, key, make):
        if key != self._key:
            self._value, self._key = make(), key
        return self._value


def get_conds(p, encoder, cache: CondCache, prompts, negatives, steps: int, hires_steps: int | None = None):
    """(MultiCond for the prompts, list[ScheduledCond] for the negatives)."""
    key = (tuple(prompts), tuple(negatives), steps, hires_steps, p.opts.CLIP_stop_at_last_layers,
           p.opts.emphasis)

    def make():
        with torch.no_grad():
            return (encoder.multicond(list(prompts), steps, hires_steps),
                    encoder.scheduled(list(negatives), steps, hires_steps))

    return cache.get(key, make)
