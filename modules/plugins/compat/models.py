"""Checkpoints, VAEs, upscalers and the device for extensions, by A1111's names, over the current
application's ModelManager (ctx.models), UpscalerTable and device policy.

A1111 keeps these in module globals (`sd_models.checkpoints_list`, `shared.sd_upscalers`,
`devices.device`); here each is computed from the application when it is read.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from modules.script_callbacks import current_scope


def _ctx():
    return current_scope().ctx


def _models():
    models = _ctx().models
    if models is None:
        raise RuntimeError("no model manager in this application (the engine is not started)")
    return models


# -- checkpoints (modules.sd_models) -----------------------------------------------------------------
def checkpoint_tiles(use_short: bool = False) -> list[str]:
    """The checkpoint titles `name [hash]` (A1111's list for dropdowns)."""
    infos = _models().catalog.list()
    return [f"{os.path.basename(i.name)} [{i.shorthash}]" if use_short else i.title for i in infos]


def list_models() -> None:
    """Rescan the checkpoint folders (A1111's sd_models.list_models / shared.refresh_checkpoints)."""
    _models().refresh()


def checkpoints_list() -> dict:
    return {i.title: i for i in _models().catalog.list()}


def checkpoint_aliases() -> dict:
    out = {}
    for info in _models().catalog.list():
        for alias in [info.title, info.name, info.model_name, info.name_for_extra, info.shorthash, info.sha256]:
            out.setdefault(alias, info)
    return out


def get_closet_checkpoint_match(search: str):
    """The checkpoint a name, title or hash (or part of a name) refers to, or None (A1111's spelling)."""
    if not search:
        return None
    catalog = _models().catalog
    info = catalog.get(search)
    if info is not None:
        return info
    found = sorted((i for i in catalog.list() if search in i.title), key=lambda i: len(i.title))
    return found[0] if found else None


def select_checkpoint():
    models = _models()
    if models.current is not None:
        return models.current.info
    from modules.startup import default_checkpoint
    return default_checkpoint(_ctx())


def reload_model_weights(sd_model=None, info=None, forced_reload: bool = False):
    """Load `info` (a CheckpointInfo or title; default: the sd_model_checkpoint setting) and return
    the model; the model manager does the loading, with its lock."""
    models = _models()
    wanted = info if info is not None else _ctx().opts.sd_model_checkpoint or select_checkpoint()
    if wanted is None:
        raise RuntimeError("no checkpoint to load")
    return models.load(wanted).model


def unload_model_weights(sd_model=None, info=None) -> None:
    _models().unload()


def current_sd_model():
    """The loaded model as A1111 extensions see it (ModelView), or None."""
    ctx = _ctx()
    current = ctx.models.current if ctx.models is not None else None
    return ModelView(current, ctx) if current is not None else None


class ModelData:
    """sd_models.model_data: `.sd_model`, `.get_sd_model()`, `.loaded_sd_models`."""

    @property
    def sd_model(self):
        return current_sd_model()

    def get_sd_model(self):
        from modules.startup import current_model
        return ModelView(current_model(_ctx()), _ctx())

    @property
    def loaded_sd_models(self) -> list:
        return [loaded.model for loaded in _models().loaded]


def read_metadata_from_safetensors(filename: str) -> dict:
    """The `__metadata__` of a .safetensors header, json values decoded where they are json."""
    import json
    import struct
    with open(filename, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    out = {}
    for key, value in (header.get("__metadata__") or {}).items():
        if isinstance(value, str) and value[:1] == "{":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        out[key] = value
    return out


# -- VAEs (modules.sd_vae) ----------------------------------------------------------------------------
def vae_dict() -> dict:
    catalog = getattr(_models(), "vae_catalog", None)
    return {name: catalog.get(name).filename for name in catalog.names()} if catalog is not None else {}


def refresh_vae_list() -> None:
    catalog = getattr(_models(), "vae_catalog", None)
    if catalog is not None:
        catalog.refresh()


def find_vae_near_checkpoint(checkpoint_file: str) -> str | None:
    from modules.models.vae import vae_beside
    found = vae_beside(checkpoint_file)
    return str(found) if found is not None else None


# -- upscalers (shared.sd_upscalers) -------------------------------------------------------------------
class _Scaler:
    """A1111's Upscaler object: `upscale(img, scale, selected_path=None)`."""

    def __init__(self, table, name: str):
        self.table, self.name = table, name
        self.scale = 4

    def upscale(self, img, scale: float, selected_path=None):
        width, height = int(img.width * scale), int(img.height * scale)
        return self.table.upscale(img, self.name, width, height)

    def do_upscale(self, img, selected_model=None):
        entry = self.table.get(self.name)
        factor = entry.scale or 1
        return self.table.upscale(img, self.name, img.width * factor, img.height * factor)


@dataclass
class UpscalerData:
    """A1111's UpscalerData: name, data_path, scale, scaler, model_path."""

    name: str
    data_path: str | None
    scale: float
    scaler: Any
    model_path: str | None = None


def sd_upscalers() -> list[UpscalerData]:
    table = _ctx().services.upscalers
    return [UpscalerData(u.name, u.model_path, float(u.scale or 4), _Scaler(table, u.name), u.model_path)
            for u in table.entries()]


# -- device and precision (modules.devices) ------------------------------------------------------------
def device() -> torch.device:
    models = _ctx().models
    return models.device if models is not None else torch.device("cpu")


def dtype_unet() -> torch.dtype:
    models = _ctx().models
    return models.dtype_unet if models is not None else torch.float32


def dtype_vae() -> torch.dtype:
    models = _ctx().models
    return models.dtype_vae if models is not None else torch.float32


# -- the loaded model as A1111's extensions see it (shared.sd_model) -------------------------------------
class TextEncoderView:
    """The model's cond_stage_model with A1111's prompt tokenising methods (A1111 adds them to the
    text encoder it wraps): tokenize_line(line) -> (chunks with .tokens/.multipliers/.fixes, token
    count) and get_target_prompt_token_count(n), through this web UI's prompt encoder."""

    def __init__(self, model, encoder):
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_encoder", encoder)

    def tokenize_line(self, line: str):
        return self._encoder().tokenize_line(line)

    def get_target_prompt_token_count(self, token_count: int) -> int:
        return max(1, -(-int(token_count) // 75)) * 75

    def __getattr__(self, name: str):
        return getattr(self._model.cond_stage_model, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._model.cond_stage_model, name, value)

    @property
    def __class__(self):  # isinstance() sees the real text encoder
        return type(self._model.cond_stage_model)


class ModelView:
    """shared.sd_model: the loaded model, with the attributes A1111 adds to it (is_sd1, is_sd2,
    is_sdxl, is_sd3, sd_checkpoint_info, sd_model_hash, sd_model_checkpoint) and the text encoder's
    A1111 methods (TextEncoderView). Every other attribute is the model's own (reads and writes),
    and isinstance() sees the model's class."""

    def __init__(self, loaded, ctx):
        object.__setattr__(self, "_loaded", loaded)
        object.__setattr__(self, "_ctx", ctx)

    def _encoder(self):
        return self._ctx.services.conditioner(self._loaded.model, self._ctx.opts)

    @property
    def cond_stage_model(self):
        return TextEncoderView(self._loaded.model, self._encoder)

    @property
    def is_sd2(self) -> bool:
        return "OpenCLIP" in type(self._loaded.model.cond_stage_model).__name__

    @property
    def is_sd1(self) -> bool:
        return not self.is_sd2

    is_sdxl = False
    is_sd3 = False
    is_ssd = False

    @property
    def sd_checkpoint_info(self):
        return self._loaded.info

    @property
    def sd_model_hash(self) -> str:
        return self._loaded.info.shorthash

    @property
    def sd_model_checkpoint(self) -> str:
        return self._loaded.info.filename

    def __getattr__(self, name: str):
        return getattr(self._loaded.model, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._loaded.model, name, value)

    @property
    def __class__(self):
        return type(self._loaded.model)
