"""A1111's `modules.sd_samplers` path: the sampler table (modules.sampling.samplers).

`all_samplers` / `samplers` / `samplers_for_img2img` list SamplerInfo objects with A1111's `.name`
and `.aliases`; `all_samplers_map` maps names to them, `samplers_map` lower-case names and aliases
to names; `find_sampler_config(name)` returns the entry or None, as A1111's does;
`visible_sampler_names()` lists the names. A1111's `create_sampler` (its sampler classes) is not
available: this web UI runs k-diffusion's functions through its own CFG denoiser.
"""
from __future__ import annotations

from modules.sampling.samplers import SAMPLERS, SamplerInfo, find_sampler  # noqa: F401

all_samplers = list(SAMPLERS)
samplers = all_samplers
samplers_for_img2img = all_samplers
all_samplers_map = {s.name: s for s in all_samplers}
samplers_map = {alias.lower(): s.name for s in all_samplers for alias in (s.name, *s.aliases)}


def find_sampler_config(name: str | None) -> SamplerInfo | None:
    try:
        return find_sampler(name) if name else None
    except ValueError:
        return None


def visible_sampler_names() -> list[str]:
    return [s.name for s in all_samplers]
