"""Image models (ESRGAN-family upscalers, GFPGAN, CodeFormer) read from a file, detected and built
by spandrel (MIT; the library A1111 1.10 and ComfyUI use to tell these architectures apart from
their state dicts), and run on images in overlapping tiles.

Files are read by the same safe reader as checkpoints (modules.models.state_dict): safetensors, or
a pickle through torch.load(weights_only=True), so a file that would run code is refused. spandrel
only ever sees the resulting dict of tensors (never its own file loader).

    info = describe(path)              # architecture and scale from the shapes alone (meta tensors)
    model = load(path)                 # spandrel ImageModelDescriptor, weights loaded, eval mode
    image = upscale(model, image, tile=192, overlap=8)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.models import state_dict as sd_io

MODEL_EXTENSIONS = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


class UnsupportedModel(ValueError):
    """A readable file whose architecture spandrel does not know."""


def _spandrel():
    import spandrel
    import spandrel_extra_arches  # CodeFormer (and others with non-MIT licences) live here

    if not getattr(_spandrel, "installed", False):  # adds its architectures to spandrel's registry, once
        spandrel_extra_arches.install()
        _spandrel.installed = True
    return spandrel


def read_tensors(path: str | Path, meta: bool = False) -> dict:
    """The file's tensors (wrappers such as `params_ema` are unwrapped by spandrel). meta=True gives
    meta tensors of the same shapes: enough to detect the architecture without reading weights."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        if meta:
            from safetensors import safe_open
            try:
                with safe_open(str(path), framework="pt") as f:
                    out = {}
                    for key in f.keys():
                        part = f.get_slice(key)
                        out[key] = torch.empty(part.get_shape(), dtype=_DTYPES.get(part.get_dtype(), torch.float32),
                                               device="meta")
                    return out
            except Exception as e:  # noqa: BLE001 - reported as the file's problem, like the full read
                raise ValueError(f"cannot read {path.name}: not a valid .safetensors file ({e})") from e
        return sd_io.read_safetensors(path)
    if suffix in sd_io.PICKLE_EXTENSIONS:
        obj = sd_io.read_pickle(path)
        return _to_meta(obj) if meta else obj
    raise ValueError(f"unknown model format {suffix!r} for {path.name}: use .pth or .safetensors")


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8, "BOOL": torch.bool}


def _to_meta(obj):
    if isinstance(obj, torch.Tensor):
        return torch.empty(obj.shape, dtype=obj.dtype, device="meta")
    if isinstance(obj, dict):
        return {k: _to_meta(v) for k, v in obj.items()}
    return obj


def _canonical(obj) -> dict:
    from spandrel.__helpers.canonicalize import canonicalize_state_dict

    if not isinstance(obj, dict):
        raise ValueError(f"not a model file: it holds a {type(obj).__name__}, not a dict of tensors")
    return canonicalize_state_dict(obj)


def build(state_dict: dict, name: str = "the model"):
    """spandrel's descriptor for a state dict (UnsupportedModel when no architecture matches)."""
    spandrel = _spandrel()
    try:
        return spandrel.ModelLoader(device="cpu").load_from_state_dict(_canonical(state_dict))
    except spandrel.UnsupportedModelError:
        raise UnsupportedModel(f"{name}: not an architecture this web UI can run (spandrel knows ESRGAN, "
                               "Real-ESRGAN, SwinIR, SCUNet, DAT, HAT, GFPGAN, CodeFormer and more)") from None
    except (RuntimeError, KeyError, AssertionError, IndexError) as e:
        raise UnsupportedModel(f"{name}: the weights do not fit the architecture they look like ({e})") from None


@dataclass(frozen=True)
class ModelInfo:
    """What a listing needs, read from the shapes only."""

    path: Path
    architecture: str   # spandrel's name: ESRGAN, RealESRGAN Compact, SwinIR, SCUNet, DAT, HAT, GFPGAN ...
    purpose: str        # "SR" (upscaler), "FaceSR" (face restorer), "Restoration" (1x)
    scale: int


def describe(path: str | Path) -> ModelInfo:
    """Architecture, purpose and scale of a model file without loading its weights: the network is
    built on the meta device from meta tensors of the file's shapes."""
    path = Path(path)
    key = (str(path.resolve()), *_stat(path))
    if key in _DESCRIBED:
        return _DESCRIBED[key]
    tensors = read_tensors(path, meta=True)
    try:
        with torch.device("meta"):
            model = build(tensors, path.name)
    except UnsupportedModel as e:
        if "meta" not in str(e):
            raise
        model = build(read_tensors(path), path.name)  # some networks compute values at build time
    info = _DESCRIBED[key] = ModelInfo(path, model.architecture.name, model.purpose, int(model.scale))
    return info


_DESCRIBED: dict[tuple, ModelInfo] = {}  # (path, size, mtime) -> info: a cache of facts about files


def _stat(path: Path) -> tuple[int, float]:
    st = path.stat()
    return st.st_size, st.st_mtime


def load(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The model with its weights, in eval mode on `device` (fp16/bf16 only where the architecture
    supports it, else fp32)."""
    path = Path(path)
    model = build(read_tensors(path), path.name)
    if dtype == torch.float16 and not model.supports_half or dtype == torch.bfloat16 and not model.supports_bfloat16:
        dtype = torch.float32
    return model.to(device).to(dtype).eval()


def scale_from_name(name: str, default: int = 4) -> int:
    """A1111's guess from a file name ("4x-UltraSharp", "RealESRGAN_x2plus"): the factor before or
    after an x; used where the shapes cannot tell."""
    match = re.search(r"(?:^|[^a-z0-9])(\d)x|x(\d)(?:[^0-9]|$)", name.lower())
    return int(match.group(1) or match.group(2)) if match else default


# -- running on images -------------------------------------------------------------------------------

def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> [1, 3, H, W] float32 in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] in [0, 1] -> PIL RGB (rounded, clamped)."""
    array = (x[0].float().clamp(0, 1).permute(1, 2, 0) * 255.0).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(array)


def upscale(model, image: Image.Image, tile: int = 0, overlap: int = 0, interrupt=None) -> Image.Image:
    """One pass of the model over the image, in tile x tile pieces overlapping by `overlap` pixels
    (A1111's ESRGAN_tile / ESRGAN_tile_overlap; 0 = the whole image at once); the overlaps are
    blended with linear ramps, so no seam shows. interrupt: an object whose `.interrupted` stops
    between tiles."""
    from modules.processing.vae import run_tiled

    x = pil_to_tensor(image)
    param = next(model.model.parameters())
    x = x.to(param.device, param.dtype)

    def one(part: torch.Tensor) -> torch.Tensor:
        if interrupt is not None and getattr(interrupt, "interrupted", False):
            from modules.jobs import JobInterrupted
            raise JobInterrupted("interrupted while upscaling")
        with torch.inference_mode():
            return model(part)

    with torch.inference_mode():
        if tile and max(x.shape[-2:]) > tile:
            if not 0 <= overlap < tile // 2 + 1:
                raise ValueError(f"tile overlap must be between 0 and half the tile size ({tile // 2}), got {overlap}")
            out = run_tiled(one, x, tile, overlap, model.scale, model.output_channels)
        else:
            out = one(x)
    return tensor_to_pil(out)
