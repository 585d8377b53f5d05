"""The model manager: which checkpoint is loaded, switching, the VAE override, freeing memory.

One instance lives in the application context. Every change happens under one lock, so two jobs
never switch models at once; a job that needs the model holds `manager.lock` (re-entrant) while it
runs. At most `max_loaded` checkpoints stay in memory (least recently used goes first, and it goes
*before* the next one is read, so a switch never holds two models when max_loaded is 1).

"Model loaded" callbacks (for extensions) are a plain list of callables `fn(loaded)` given
to the constructor or appended later; one that raises is reported and skipped.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import torch

from modules import devices
from modules.models.catalog import CheckpointCatalog, CheckpointInfo, HashCache
from modules.models.loader import load_checkpoint
from modules.models.offload import Offloader
from modules.models.vae import AUTOMATIC, VaeCatalog, VaeInfo, read_vae_state_dict, swap_vae

log = logging.getLogger(__name__)


@dataclass
class LoadedCheckpoint:
    info: CheckpointInfo
    model: torch.nn.Module
    config: str  # the yaml used (path) or the bundled config's name
    vae: VaeInfo | None = None  # the override in effect, None = the checkpoint's own
    own_vae: dict | None = field(default=None, repr=False)  # the checkpoint's VAE tensors while overridden
    offloader: Offloader | None = field(default=None, repr=False)  # --medvram / --lowvram


Loader = Callable[..., tuple]  # (path, device=, dtype=, dtype_vae=) -> (model, config)


def _default_loader(path, device, dtype, dtype_vae):
    result = load_checkpoint(path, device=device, dtype=dtype, dtype_vae=dtype_vae)
    return result.model, result.config


class ModelManager:
    def __init__(self, catalog: CheckpointCatalog, device: torch.device | str = "cpu",
                 dtype_unet: torch.dtype = torch.float32, dtype_vae: torch.dtype = torch.float32,
                 max_loaded: int = 1, vae_catalog: VaeCatalog | None = None, vae_choice: str = AUTOMATIC,
                 callbacks: list[Callable[[LoadedCheckpoint], None]] | None = None,
                 loader: Loader = _default_loader, offload: str = "none"):
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, not {max_loaded}")
        self.catalog = catalog
        self.device = torch.device(device)
        self.dtype_unet, self.dtype_vae = dtype_unet, dtype_vae
        self.max_loaded = max_loaded
        self.vae_catalog = vae_catalog
        self.vae_choice = vae_choice
        self.callbacks = list(callbacks or [])
        self.loader = loader
        self.offload = offload  # "none", "med", "low": modules.models.offload
        self.lock = threading.RLock()
        self._loaded: OrderedDict[str, LoadedCheckpoint] = OrderedDict()  # filename -> loaded, LRU last

    @classmethod
    def from_paths(cls, paths, policy: devices.DevicePolicy, max_loaded: int = 1, vae_choice: str = AUTOMATIC,
                   callbacks: list[Callable[[LoadedCheckpoint], None]] | None = None) -> "ModelManager":
        """The usual wiring: `paths` is a modules.paths.Paths (ckpt_dirs, vae_dir, cache_file),
        `policy` from modules.devices.policy_from_args. Scans the folders once."""
        catalog = CheckpointCatalog(paths.ckpt_dirs, HashCache(paths.cache_file))
        vaes = VaeCatalog(paths.vae_dir, paths.ckpt_dirs)
        manager = cls(catalog, policy.device, policy.dtype_unet, policy.dtype_vae, max_loaded=max_loaded,
                      vae_catalog=vaes, vae_choice=vae_choice, callbacks=callbacks, offload=policy.offload)
        manager.refresh()
        return manager

    # --- what is loaded -------------------------------------------------------------------------
    @property
    def current(self) -> LoadedCheckpoint | None:
        with self.lock:
            return next(reversed(self._loaded.values()), None)

    @property
    def sd_model(self) -> torch.nn.Module | None:
        current = self.current
        return current.model if current else None

    @property
    def sd_model_name(self) -> str | None:
        """Infotext `Model:` (basename without extension)."""
        current = self.current
        return current.info.name_for_extra if current else None

    @property
    def sd_model_hash(self) -> str | None:
        """Infotext `Model hash:` (first 10 hex digits of the file's sha256)."""
        current = self.current
        return current.info.shorthash if current else None

    @property
    def sd_vae_name(self) -> str | None:
        current = self.current
        return current.vae.basename if current and current.vae else None

    @property
    def sd_vae_hash(self) -> str | None:
        current = self.current
        if not (current and current.vae):
            return None
        return self.catalog.hash_cache.sha256(current.vae.filename)[:10]

    def loaded(self) -> list[LoadedCheckpoint]:
        with self.lock:
            return list(self._loaded.values())

    # --- changing it ------------------------------------------------------------------------------
    def load(self, checkpoint: str | CheckpointInfo) -> LoadedCheckpoint:
        """Make `checkpoint` (a title, name, hash or CheckpointInfo) the current model."""
        with self.lock:
            info = checkpoint if isinstance(checkpoint, CheckpointInfo) else self.catalog.require(checkpoint)
            loaded = self._loaded.pop(info.filename, None)
            if loaded is None:
                previous = self.current.info if self.current else None
                self._evict(keep=self.max_loaded - 1)
                try:
                    loaded = self._read(info)
                except Exception:
                    self._restore(previous)
                    raise
                self._loaded[info.filename] = loaded
                self._apply_vae_choice(loaded)
                self._notify(loaded)  # the new model is current when the callbacks run (A1111)
                return loaded
            self._loaded[info.filename] = loaded
            self._apply_vae_choice(loaded)
            return loaded

    def reload(self) -> LoadedCheckpoint | None:
        """Read the current checkpoint from disk again (after it changed, or to undo patches)."""
        with self.lock:
            current = self.current
            if current is None:
                return None
            info = current.info
            del current
            self._evict_one(info.filename)
            return self.load(info)

    def unload(self) -> None:
        """Drop every loaded model and give the memory back."""
        with self.lock:
            self._evict(keep=0)

    def refresh(self) -> list[CheckpointInfo]:
        """Rescan the checkpoint (and VAE) folders."""
        with self.lock:
            if self.vae_catalog is not None:
                self.vae_catalog.refresh()
            return self.catalog.refresh()

    def set_vae(self, choice: str) -> VaeInfo | None:
        """Change the sd_vae choice ("Automatic", "None" or a VAE name) and apply it to the current model."""
        with self.lock:
            previous = self.vae_choice
            self.vae_choice = choice
            current = self.current
            try:
                if current is not None:
                    self._apply_vae_choice(current)
            except Exception:
                self.vae_choice = previous
                raise
            return current.vae if current else None

    # --- internals --------------------------------------------------------------------------------
    def _read(self, info: CheckpointInfo) -> LoadedCheckpoint:
        offloader = None
        with devices.oom_guard(f"loading {info.name}"):
            # offloading: read to the CPU; the parts then come to the device one at a time
            model, config = self.loader(info.filename, device="cpu" if self.offload != "none" else self.device,
                                        dtype=self.dtype_unet, dtype_vae=self.dtype_vae)
            if self.offload != "none":
                offloader = Offloader(self.device).install(model, self.offload)
        loaded = LoadedCheckpoint(info=info, model=model, config=str(config), offloader=offloader)
        log.info("loaded %s (config %s)", info.title, config)
        return loaded

    def _notify(self, loaded: LoadedCheckpoint) -> None:
        for callback in list(self.callbacks):
            try:
                callback(loaded)
            except Exception:  # an extension's bug must not break model loading
                log.exception("model-loaded callback %r failed", callback)

    def _restore(self, previous: CheckpointInfo | None) -> None:
        """After a failed switch, bring back the model that was current (best effort)."""
        if previous is None or previous.filename in self._loaded:
            return
        try:
            self._loaded[previous.filename] = self._read(previous)
            self._apply_vae_choice(self._loaded[previous.filename])
            self._notify(self._loaded[previous.filename])
        except Exception:
            log.exception("could not reload %s after a failed switch", previous.title)

    def _evict_one(self, filename: str) -> None:
        self._loaded.pop(filename, None)
        devices.free_memory(self.device)

    def _evict(self, keep: int) -> None:
        if len(self._loaded) <= keep:
            return
        while len(self._loaded) > keep:
            self._loaded.popitem(last=False)
        devices.free_memory(self.device)

    def _apply_vae_choice(self, loaded: LoadedCheckpoint) -> None:
        wanted = None
        if self.vae_catalog is not None:
            wanted = self.vae_catalog.resolve(self.vae_choice, loaded.info.filename)
        if wanted == loaded.vae:
            return
        if loaded.own_vae is not None:  # back to the checkpoint's own first
            swap_vae(loaded.model, loaded.own_vae, source=loaded.info.name)
            loaded.own_vae, loaded.vae = None, None
        if wanted is not None:
            loaded.own_vae = swap_vae(loaded.model, read_vae_state_dict(wanted.filename), source=wanted.name)
            loaded.vae = wanted
            log.info("VAE %s applied to %s", wanted.name, loaded.info.name)
