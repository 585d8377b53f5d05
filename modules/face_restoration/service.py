"""GFPGAN and CodeFormer from A1111's folders, and the face detector they need.

Folders: models/GFPGAN (GFPGANv1.4.pth ...) and models/Codeformer (codeformer-v0.1.0.pth), or the
--gfpgan-models-path / --codeformer-models-path flags. The detector's weights (facexlib's
`detection_Resnet50_Final.pth`, where A1111 keeps it: models/GFPGAN) are read from there; when the file
is missing it is downloaded once if this machine is online, otherwise the error says what to put
where. Every file goes through the safe reader (no pickle code runs).

Settings (A1111's): face_restoration_model (which one txt2img/img2img use), code_former_weight
(0 = strongest), face_restoration_unload. Extras blends with gfpgan_visibility / codeformer_visibility.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules import spandrel_models
from modules.face_restoration import align, retinaface
from modules.models import state_dict as sd_io
from modules.upscaler_models import model_files, model_folders

log = logging.getLogger("sdwebui")

RESTORERS = {"CodeFormer": "Codeformer", "GFPGAN": "GFPGAN"}  # name -> folder
ARCHITECTURES = {"CodeFormer": "CodeFormer", "GFPGAN": "GFPGAN"}
DETECTOR_FILE = "detection_Resnet50_Final.pth"
DETECTOR_URL = "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth"
NOT_RESTORERS = {DETECTOR_FILE, "parsing_parsenet.pth", "parsing_bisenet.pth"}
EXAMPLE_FILES = {"CodeFormer": "codeformer-v0.1.0.pth", "GFPGAN": "GFPGANv1.4.pth"}


class FaceRestorers:
    def __init__(self, ctx, detector_url: str | None = DETECTOR_URL):
        self.ctx = ctx
        self.detector_url = detector_url
        self.detect_size: int | None = 640  # the short side faces are looked for at (facexlib's resize=640)
        self._lock = threading.Lock()
        self._models: dict[str, object] = {}
        self._detector: retinaface.RetinaFace | None = None

    # -- what is there ---------------------------------------------------------------------------
    def folders(self) -> dict[str, Path]:
        return model_folders(self.ctx, RESTORERS.values())

    def model_file(self, name: str) -> Path | None:
        """The first file in the restorer's folder whose architecture is that restorer."""
        for file in model_files(self.folders()[RESTORERS[name]]):
            if file.name in NOT_RESTORERS:
                continue
            try:
                info = spandrel_models.describe(file)
            except (ValueError, OSError) as e:
                log.warning("%s not usable for %s: %s", file, name, e)
                continue
            if info.architecture == ARCHITECTURES[name]:
                return file
        return None

    def available(self) -> list[str]:
        return [name for name in RESTORERS if self.model_file(name) is not None]

    def as_api(self) -> list[dict]:
        """/sdapi/v1/face-restorers: A1111 lists every restorer with its folder ({name, cmd_dir})."""
        folders = self.folders()
        return [{"name": name, "cmd_dir": str(folders[folder]) if self.model_file(name) else None}
                for name, folder in RESTORERS.items()]

    def missing_message(self, name: str) -> str:
        folder = self.folders()[RESTORERS[name]]
        return (f"face restoration with {name} needs its model: put {EXAMPLE_FILES[name]} (or another {name} "
                f".pth / .safetensors file) into {folder}")

    def check(self, name: str) -> None:
        if name not in RESTORERS:
            raise ValueError(f"unknown face restoration model {name!r}: use one of {', '.join(RESTORERS)}")
        if self.model_file(name) is None:
            raise ValueError(self.missing_message(name))

    # -- the detector ----------------------------------------------------------------------------
    def detector_path(self) -> Path:
        """Where the detector weights are (or will be downloaded to)."""
        candidates = [folder / DETECTOR_FILE for folder in self.folders().values()]
        return next((p for p in candidates if p.is_file()), candidates[list(RESTORERS.values()).index("GFPGAN")])

    def _download(self, target: Path) -> None:
        if not self.detector_url:
            raise ValueError(self._detector_message(target, "downloading is off"))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(self.detector_url, timeout=30) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            sd_io.read_pickle(Path(tmp))  # refuse a download that is not plain weights before keeping it
            os.replace(tmp, target)
            log.info("downloaded the face detector to %s", target)
        except (OSError, ValueError) as e:
            raise ValueError(self._detector_message(target, f"the download failed: {e}")) from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _detector_message(target: Path, why: str) -> str:
        return (f"face restoration needs the RetinaFace detector weights ({why}): put {DETECTOR_FILE} "
                f"(from {DETECTOR_URL}) into {target.parent}")

    def detector(self) -> retinaface.RetinaFace:
        if self._detector is None:
            path = self.detector_path()
            if not path.is_file():
                self._download(path)
            weights = spandrel_models.read_tensors(path)
            weights = {k.removeprefix("module."): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
            net = retinaface.RetinaFace()
            try:
                net.load_state_dict(weights, strict=True)
            except RuntimeError as e:
                raise ValueError(f"{path.name} is not RetinaFace-ResNet50 weights ({str(e)[:200]})") from None
            self._detector = net.eval()
        return self._detector

    # -- running ---------------------------------------------------------------------------------
    def _model(self, name: str):
        if name not in self._models:
            path = self.model_file(name)
            if path is None:
                raise ValueError(self.missing_message(name))
            self._models.clear()  # one restorer in memory at a time
            self._models[name] = spandrel_models.load(path)
        return self._models[name]

    def restore_crop(self, name: str, crop: Image.Image, weight: float = 0.5) -> Image.Image:
        """One aligned 512 x 512 face -> restored (the networks work in [-1, 1])."""
        model = self._model(name)
        param = next(model.model.parameters())
        x = spandrel_models.pil_to_tensor(crop).to(param.device, param.dtype) * 2 - 1
        with torch.inference_mode():
            if name == "CodeFormer":
                out = model.model(x, weight=float(weight), adain=True)[0]
            else:
                out = model.model(x, return_rgb=False)[0]
        return spandrel_models.tensor_to_pil((out.float() + 1) / 2)

    def restore(self, image: Image.Image, name: str | None = None, weight: float | None = None) -> Image.Image:
        """Every detected face of the image restored with `name` (default: the face_restoration_model
        setting) at CodeFormer `weight` (default: code_former_weight); an image without faces comes
        back unchanged."""
        opts = self.ctx.opts
        name = name or opts.face_restoration_model
        weight = opts.code_former_weight if weight is None else weight
        self.check(name)
        with self._lock:
            image = image.convert("RGB")
            faces = retinaface.detect(self.detector(), np.asarray(image), resize=self.detect_size)
            for face in faces:
                crop, matrix = align.crop_face(image, face.landmarks)
                image = align.paste_face(image, self.restore_crop(name, crop, weight), matrix)
            if opts.face_restoration_unload:
                self._models.clear()
            return image
