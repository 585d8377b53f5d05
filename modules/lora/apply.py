"""Applying LoRAs to a loaded model for one job, and taking them off exactly.

`apply_loras` sums each network's `up @ down * alpha/rank * multiplier` per weight (float32) and
applies the sums as weight patches of a ModelPatcher (modules.models.patcher: the one mechanism
for per-job weight changes), which copies the saved originals back on exit: bit-identical weights.
Nothing is patched but parameter values. Keys the model does not have are reported in
`LoraReport.messages`; the job goes on.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from modules.lora.names import Target, build_key_table
from modules.lora.network import LoraNetwork
from modules.lora.tags import lora_tags, parse_extra_networks
from modules.models import family as model_family
from modules.models.patcher import ModelPatcher


@dataclass
class LoraReport:
    """What a job's LoRAs did: for the job's info and the infotext."""

    applied: list[tuple[LoraNetwork, float, float]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    patched: int = 0  # number of weights changed

    def extra_generation_params(self) -> dict[str, str]:
        hashes = [f"{net.name.replace(':', '').replace(',', '')}: {net.shorthash}"
                  for net, _, _ in self.applied if net.shorthash]
        return {"Lora hashes": ", ".join(hashes)} if hashes else {}


def _deltas(model, loras, report: LoraReport) -> dict[tuple[str, str], torch.Tensor]:
    """(module path, param) -> summed float32 delta for the whole weight."""
    if not loras:
        return {}
    if not hasattr(model.model.diffusion_model, "input_blocks"):  # SD3's MMDiT: no kohya key table yet
        names = ", ".join(net.name for net, _, _ in loras)
        report.messages.append(f"LoRA {names}: not applied: LoRA for {model_family.of_model(model).title} "
                               "models is not supported yet (only SD 1.x / 2.x)")
        return {}
    table: dict[str, Target] = build_key_table(model)  # a walk over the modules: milliseconds
    deltas: dict[tuple[str, str], torch.Tensor] = {}
    for net, te_multiplier, unet_multiplier in loras:
        unknown = []
        for prefix, layer in net.layers.items():
            target = table.get(prefix)
            if target is None:
                unknown.append(prefix)
                continue
            multiplier = te_multiplier if target.kind == "te" else unet_multiplier
            if multiplier == 0:
                continue
            weight = getattr(model.get_submodule(target.path), target.param)
            rows = weight.shape[0] // 3 if target.part is not None else weight.shape[0]
            shape = torch.Size([rows, *weight.shape[1:]])
            try:
                delta = layer.delta(shape, weight.device) * multiplier
            except ValueError as e:
                report.messages.append(f"LoRA {net.name}: {prefix} {e}; skipped")
                continue
            total = deltas.setdefault((target.path, target.param), torch.zeros(weight.shape, dtype=torch.float32, device=weight.device))
            if target.part is None:
                total += delta
            else:
                total[target.part * rows:(target.part + 1) * rows] += delta
        if unknown:
            report.messages.append(f"LoRA {net.name}: {len(unknown)} layers not in this model "
                                   f"(e.g. {', '.join(sorted(unknown)[:3])}); they were ignored")
        if net.unsupported:
            report.messages.append(f"LoRA {net.name}: {len(net.unsupported)} keys of an unsupported kind "
                                   f"(e.g. {net.unsupported[0]}); they were ignored")
        report.applied.append((net, te_multiplier, unet_multiplier))
    return deltas


@contextlib.contextmanager
def apply_loras(model, loras: list[tuple[LoraNetwork, float, float]]):
    """`with apply_loras(model, [(net, te_multiplier, unet_multiplier), ...]) as report:` ..."""
    report = LoraReport()
    patcher = ModelPatcher(model)
    for (path, param), delta in _deltas(model, loras, report).items():
        patcher.add_weight_patch(f"{path}.{param}" if path else param, delta)
    report.patched = len(patcher.weight_patches)
    with patcher:
        yield report


class LoraExtraNetworks:
    """The `extra_networks` service for processing: `(model, prompts) -> (prompts, context manager)`.

    Tags are removed from every prompt; as in A1111, the batch's networks are those of its first
    prompt. Entering the context applies them and yields a LoraReport (names not found are in its
    messages).
    """

    def __init__(self, db):
        self.db = db

    def __call__(self, model, prompts: list[str]):
        parsed = [parse_extra_networks(p) for p in prompts]
        cleaned = [text for text, _ in parsed]
        first = parsed[0][1] if parsed else {}
        tags, messages = lora_tags(first.get("lora", []))
        for kind in first:
            if kind != "lora":
                messages.append(f"extra network type {kind!r} is not supported; its tags were removed")
        return cleaned, self._context(model, tags, messages)

    @contextlib.contextmanager
    def _context(self, model, tags, messages):
        loras, missing = [], []
        for tag in tags:
            try:
                net = self.db.get(tag.name)
            except ValueError as e:
                messages.append(str(e))
                continue
            if net is None:
                missing.append(tag.name)
            else:
                loras.append((net, tag.te_multiplier, tag.unet_multiplier))
        if missing:
            messages.append(f"LoRA not found: {', '.join(missing)}")
        with apply_loras(model, loras) as report:
            report.messages[:0] = messages
            yield report
