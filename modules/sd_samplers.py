"""A1111's `modules.sd_samplers` path: the sampler table (modules.sampling.samplers).

`all_samplers` / `samplers` list SamplerInfo objects with A1111's `.name` and `.aliases`;
`find_sampler_config(name)` returns the entry or None, as A1111's does.
"""
from __future__ import annotations

from modules.sampling.samplers import SAMPLERS, SamplerInfo, find_sampler  # noqa: F401

all_samplers = list(SAMPLERS)
samplers = all_samplers
samplers_for_img2img = all_samplers


def find_sampler_config(name: str | None) -> SamplerInfo | None:
    try:
        return find_sampler(name) if name else None
    except ValueError:
        return None
