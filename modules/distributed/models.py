"""`ctx.models` of a front end whose jobs run on workers: it lists checkpoints and remembers which one
jobs use, but loads none (the workers do, each keeping `sd_checkpoints_limit` of them).

It answers what the front ends and the settings code ask a ModelManager (catalog, vae_catalog,
current, load, set_vae, refresh, unload, reload, lock), so the quick-settings checkpoint, POST
/options and override_settings work unchanged; `current` is the chosen checkpoint with no model in
this process (`model` is None).
"""
from __future__ import annotations

import threading
from pathlib import Path

from modules.models.catalog import CheckpointInfo
from modules.models.manager import LoadedCheckpoint, ModelManager


class ClusterModels:
    def __init__(self, ctx, manager: ModelManager, pool):
        self.ctx, self.pool = ctx, pool
        self._manager = manager
        self.catalog = manager.catalog
        self.vae_catalog = manager.vae_catalog
        self.vae_choice = manager.vae_choice
        self.device, self.dtype_unet, self.dtype_vae = manager.device, manager.dtype_unet, manager.dtype_vae
        self.callbacks = manager.callbacks  # model-loaded callbacks run in the workers, never here
        self.lock = threading.RLock()
        self._chosen: LoadedCheckpoint | None = None

    @property
    def max_loaded(self) -> int:
        return max(1, int(self.ctx.opts.sd_checkpoints_limit))

    @property
    def current(self) -> LoadedCheckpoint | None:
        """The checkpoint jobs run on unless they say otherwise (the default one until chosen)."""
        with self.lock:
            if self._chosen is None:
                from modules import startup
                info = startup.default_checkpoint(self.ctx)
                if info is not None:
                    self._chosen = _chosen(info)
            return self._chosen

    sd_model = None

    @property
    def sd_model_name(self) -> str | None:
        current = self.current
        return current.info.name_for_extra if current else None

    @property
    def sd_model_hash(self) -> str | None:
        current = self.current
        return current.info.shorthash if current else None

    sd_vae_name = sd_vae_hash = None

    def loaded(self) -> list[LoadedCheckpoint]:
        return []  # see the workers: pool.describe()

    def load(self, checkpoint: str | CheckpointInfo) -> LoadedCheckpoint:
        info = checkpoint if isinstance(checkpoint, CheckpointInfo) else self.catalog.require(checkpoint)
        with self.lock:
            self._chosen = _chosen(info)
            return self._chosen

    def set_vae(self, choice: str):
        if self.vae_catalog is not None and choice not in ("Automatic", "None") and self.vae_catalog.get(choice) is None:
            raise ValueError(f"VAE {choice!r} not found")
        self.vae_choice = choice  # the workers follow the sd_vae setting each job brings
        return None

    def refresh(self) -> list[CheckpointInfo]:
        found = self._manager.refresh()
        self.pool.broadcast("refresh")
        return found

    def unload(self) -> None:
        self.pool.broadcast("unload")

    def reload(self) -> LoadedCheckpoint | None:
        """Workers read the checkpoint from disk again the next time a job needs it."""
        self.pool.broadcast("unload")
        return self.current


def _chosen(info: CheckpointInfo) -> LoadedCheckpoint:
    yaml = Path(info.filename).with_suffix(".yaml")
    return LoadedCheckpoint(info=info, model=None, config=str(yaml) if yaml.is_file() else "")
