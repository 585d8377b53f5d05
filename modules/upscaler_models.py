"""The model upscalers users drop into A1111's folders, as rows of the upscaler table.

Folders (A1111's, each with its `--<name>-models-path` flag): models/ESRGAN, models/RealESRGAN,
models/SwinIR, models/ScuNET, models/DAT, models/HAT. Every .pth / .safetensors file there whose
architecture spandrel detects as an upscaler becomes one entry named after the file (A1111 names
ESRGAN-folder models the same way: "4x-UltraSharp"), usable in Extras, hires fix, SD upscale and
listed by /upscalers; Real-ESRGAN's folder is also what /realesrgan-models lists. Tiles follow the
folder's A1111 setting (ESRGAN_tile / _overlap, SWIN_, SCUNET_, DAT_). One model is kept loaded at a
time (the last one used); files that cannot be read or are not upscalers are reported, not listed.

    service = ModelUpscalers(ctx)
    service.refresh()        # scans the folders, (re)registers the entries in ctx.services.upscalers
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from modules import spandrel_models
from modules.upscalers import Upscaler

log = logging.getLogger("sdwebui")

# folder -> the A1111 setting prefix for its tiles
UPSCALER_FOLDERS = {"ESRGAN": "ESRGAN", "RealESRGAN": "ESRGAN", "SwinIR": "SWIN", "ScuNET": "SCUNET",
                    "DAT": "DAT", "HAT": "ESRGAN"}


def model_folders(ctx, names) -> dict[str, Path]:
    """folder name -> the path it has on this server (the --<name>-models-path flag, else models/<name>)."""
    out = {}
    for name in names:
        flag = getattr(ctx.args, f"{name.lower()}_models_path", None)
        out[name] = Path(flag).resolve() if flag else ctx.paths.models_dir / name
    return out


def model_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in spandrel_models.MODEL_EXTENSIONS)


@dataclass(frozen=True)
class FoundModel:
    name: str
    info: spandrel_models.ModelInfo
    folder: str  # one of UPSCALER_FOLDERS


class ModelUpscalers:
    """Finds the model files, registers one upscaler table entry each, runs them (tiled)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.found: dict[str, FoundModel] = {}
        self.problems: dict[str, str] = {}   # file -> why it is not listed
        self._lock = threading.Lock()
        self._loaded: tuple[Path, object] | None = None

    def folders(self) -> dict[str, Path]:
        return model_folders(self.ctx, UPSCALER_FOLDERS)

    def refresh(self) -> None:
        table = self.ctx.services.upscalers
        for name in self.found:
            table.unregister(name)
        found, problems = {}, {}
        for folder, path in self.folders().items():
            for file in model_files(path):
                try:
                    info = spandrel_models.describe(file)
                except (ValueError, OSError) as e:  # refused pickles, unknown architectures, broken files
                    problems[str(file)] = str(e)
                    log.warning("upscaler %s not listed: %s", file, e)
                    continue
                if info.purpose != "SR":
                    problems[str(file)] = f"{file.name} is a {info.architecture} {info.purpose} model, not an upscaler"
                    continue
                name = file.stem if file.stem not in found and file.stem not in table else f"{file.stem} ({folder})"
                found[name] = FoundModel(name, info, folder)
        self.found, self.problems = found, problems
        for model in found.values():
            table.register(self.entry(model))

    def entry(self, model: FoundModel) -> Upscaler:
        def run(image: Image.Image, **_kw) -> Image.Image:
            return self.upscale(model, image)
        return Upscaler(model.name, scale=model.info.scale, run=run, model_name=model.info.architecture,
                        model_path=str(model.info.path))

    def tile_settings(self, model: FoundModel) -> tuple[int, int]:
        prefix = UPSCALER_FOLDERS[model.folder]
        opts = self.ctx.opts
        return int(opts.get(f"{prefix}_tile")), int(opts.get(f"{prefix}_tile_overlap"))

    def model(self, path: Path):
        """The loaded network for a file (one kept at a time)."""
        if self._loaded is not None and self._loaded[0] == path:
            return self._loaded[1]
        self._loaded = None  # free the previous one first
        device = getattr(self.ctx.models, "device", None) or torch.device("cpu")
        dtype = getattr(self.ctx.models, "dtype_vae", None) or torch.float32
        model = spandrel_models.load(path, device=device, dtype=dtype)
        self._loaded = (path, model)
        return model

    def upscale(self, model: FoundModel, image: Image.Image) -> Image.Image:
        tile, overlap = self.tile_settings(model)
        with self._lock:
            network = self.model(model.info.path)
            job = self.ctx.jobs.current if getattr(self.ctx, "jobs", None) is not None else None
            return spandrel_models.upscale(network, image.convert("RGB"), tile, overlap, interrupt=job)

    def realesrgan_models(self) -> list[dict]:
        """/sdapi/v1/realesrgan-models: what models/RealESRGAN holds (A1111's {name, path, scale})."""
        return [{"name": m.name, "path": str(m.info.path), "scale": m.info.scale}
                for m in self.found.values() if m.folder == "RealESRGAN"]
