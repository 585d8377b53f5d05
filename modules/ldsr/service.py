"""The "LDSR" upscaler of the upscaler table (modules.upscalers; `entry()` is its row, the service
behind it `ctx.services.upscalers.get("LDSR").service`): Extras, the API and hires fix.

Files: `models/LDSR/` (or --ldsr-models-path) as A1111 has them; without them, the small demo model
this project trained and ships (`models/LDSR/demo/`: it knows only the synthetic shapes scenes, see
the README). Settings (A1111's): ldsr_steps (DDIM steps, default 100), ldsr_cached (keep the model
loaded between calls; otherwise it is loaded for each call and freed after, as A1111).

Progress and interrupt go through the running job (ctx.jobs.current): one step per DDIM step; an
interrupt ends sampling and decodes the last prediction.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Optional

from PIL import Image

from modules.upscalers import Upscaler

from . import checkpoint
from .upscale import LDSRSettings, sampling_steps, super_resolution

log = logging.getLogger(__name__)

NAME = "LDSR"
SHIPPED_DIR = checkpoint.ROOT / "models" / "LDSR"
DEMO_DIR = SHIPPED_DIR / "demo"
DOWNLOAD = ("https://heibox.uni-heidelberg.de/f/578df07c8fc04ffbadf3/?dl=1 (model.ckpt) and "
            "https://heibox.uni-heidelberg.de/f/31a76b13ea27482981b4/?dl=1 (project.yaml)")


def missing_message(folder: Path) -> str:
    return (f"'LDSR' needs the LDSR model: put model.ckpt (or model.safetensors) and project.yaml into {folder} "
            f"(A1111 downloads them from {DOWNLOAD}), or pick Lanczos / Nearest")


class LDSRUpscaler:
    """Finds, loads and (optionally) caches LDSR; `entry()` is its row of the upscaler table."""

    def __init__(self, ctx, fallback_dirs: tuple = (SHIPPED_DIR, DEMO_DIR)):
        self.ctx = ctx
        self.fallback_dirs = tuple(fallback_dirs)  # searched after the user's folder (the shipped demo)
        self._lock = threading.Lock()
        self._cached: Optional[tuple] = None  # (files, model)

    def folders(self) -> list[Path]:
        user = Path(getattr(self.ctx.paths, "ldsr_dir", None) or self.ctx.paths.models_dir / "LDSR")
        return list(dict.fromkeys([user, *self.fallback_dirs]))

    def files(self) -> checkpoint.LDSRFiles:
        for folder in self.folders():
            found = checkpoint.find_files(folder)
            if found is not None:
                return found
        raise ValueError(missing_message(self.folders()[0]))

    def is_demo(self) -> bool:
        try:
            return self.files().model.parent == DEMO_DIR
        except ValueError:
            return False

    def settings(self) -> LDSRSettings:
        return LDSRSettings(steps=int(self.ctx.opts.ldsr_steps))

    def model(self):
        files = self.files()
        with self._lock:
            cache = bool(self.ctx.opts.ldsr_cached)
            if cache and self._cached is not None and self._cached[0] == files:
                return self._cached[1]
            self._cached = None
            device = self.ctx.models.device if self.ctx.models is not None else "cpu"
            log.info("loading LDSR from %s (%s)", files.model, files.config.name)
            model = checkpoint.load_ldsr(files, device=device)
            if cache:
                self._cached = (files, model)
            return model

    def upscale(self, image: Image.Image, width: int, height: int, job=None) -> Image.Image:
        """image -> LDSR at the scale that reaches (width, height), then Lanczos to exactly that size."""
        settings = self.settings()
        scale = max(width / image.width, height / image.height)
        model = self.model()
        saved = None
        if job is not None:
            saved = (job.sampling_step, job.sampling_steps, job.textinfo)
            job.sampling_step, job.sampling_steps = 0, sampling_steps(settings.steps)
            job.textinfo = "LDSR"
        try:
            out = super_resolution(model, image, settings, scale,
                                   callback=None if job is None else lambda done, total: job.set_step(done),
                                   should_stop=None if job is None else lambda: job.interrupted or job.skipped)
        finally:
            if saved is not None:
                job.sampling_step, job.sampling_steps, job.textinfo = saved
            if not self.ctx.opts.ldsr_cached:
                del model
                self._cached = None
        return out if out.size == (width, height) else out.resize((int(width), int(height)), Image.LANCZOS)

    def __call__(self, image: Image.Image, width: int, height: int, **_ignored) -> Image.Image:
        return self.upscale(image, width, height, job=self.ctx.jobs.current)

    def entry(self) -> Upscaler:
        """LDSR reaches any size in one run (it pre-resizes to a quarter of the target, A1111's way)."""
        return Upscaler(NAME, scale=4, run=self, any_size=True, model_name=NAME, service=self)
