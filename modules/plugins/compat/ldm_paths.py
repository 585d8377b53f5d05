"""The original LDM module paths (`ldm.modules.attention`, `ldm.modules.diffusionmodules.openaimodel`,
...) for extension code that imports them to find or hook the model's layers (A1111 puts the LDM
repository on sys.path). Each is a stand-in module for this project's module with the same class
names (SpatialTransformer, BasicTransformerBlock, CrossAttention, ResBlock, TimestepEmbedSequential,
AttnBlock, LatentDiffusion, FrozenCLIPEmbedder...): attribute names are the checkpoint keys, so the
layers sit where LDM's do. They are in sys.modules only while an extension's script is imported
(`installed()`), and never when a real `ldm` package is installed."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from typing import Iterator

from torch import nn


class MemoryEfficientCrossAttention(nn.Module):
    """LDM's xformers attention class: this project has none, so no layer is one."""


class MemoryEfficientAttnBlock(nn.Module):
    """LDM's xformers VAE attention class: this project has none, so no layer is one."""


ALIASES = {  # LDM module -> (this project's module, extra names)
    "ldm.modules.attention": ("modules.ldm.attention",
                              {"MemoryEfficientCrossAttention": MemoryEfficientCrossAttention}),
    "ldm.modules.diffusionmodules.openaimodel": ("modules.ldm.unet", {}),
    "ldm.modules.diffusionmodules.model": ("modules.ldm.autoencoder",
                                           {"MemoryEfficientAttnBlock": MemoryEfficientAttnBlock}),
    "ldm.modules.distributions.distributions": ("modules.ldm.autoencoder", {}),
    "ldm.models.autoencoder": ("modules.ldm.autoencoder", {}),
    "ldm.models.diffusion.ddpm": ("modules.ldm.latent_diffusion", {}),
    "ldm.modules.encoders.modules": ("modules.ldm.clip_text", {}),
}


class _StandIn(types.ModuleType):
    def __init__(self, name: str, target: str | None, extra: dict):
        super().__init__(name)
        self.__path__: list = []  # a package: `import ldm.modules.attention` walks through it
        self._target, self._extra = target, extra

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._extra:
            return self._extra[name]
        if self._target is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(importlib.import_module(self._target), name)


def _stand_ins() -> dict[str, types.ModuleType]:
    out: dict[str, types.ModuleType] = {}
    for name, (target, extra) in ALIASES.items():
        out[name] = _StandIn(name, target, extra)
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            out.setdefault(parent, _StandIn(parent, None, {}))
    for name, module in out.items():  # `ldm.modules` is an attribute of `ldm`...
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(out[parent], child, module)
    return out


@contextlib.contextmanager
def installed() -> Iterator[None]:
    if "ldm" not in sys.modules and importlib.util.find_spec("ldm") is not None:
        yield  # a real LDM package is installed: extensions get that
        return
    added = {name: module for name, module in _stand_ins().items() if name not in sys.modules}
    sys.modules.update(added)
    try:
        yield
    finally:
        for name, module in added.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
