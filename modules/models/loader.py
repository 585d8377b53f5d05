"""Building Stable Diffusion models and loading checkpoints into them.

Public API (stable; the README copies it):

    build_model(config, device="cpu", dtype=torch.float32) -> model
        config: a yaml path or a bundled name ("v1-inference", "v1-inpainting-inference",
        "v2-inference", "v2-inference-v", "v2-inpainting-inference", "v2-midas-inference",
        "x4-upscaling"), or an SD3 layout ("sd3-medium", "sd3-medium-incl-clips",
        "sd3-medium-incl-clips-t5xxl", "sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium": the files
        Stability AI publishes, key for key). With device="meta" nothing is allocated.

    read_state_dict(path) -> {key: tensor}
        .safetensors memory-mapped; .ckpt/.pt only via torch.load(weights_only=True) (a pickle that
        would run code raises CheckpointRefused, a ValueError); a `state_dict` wrapper, non-tensor
        entries and `model_ema.*` are dropped. Truncated/corrupt files raise ValueError.

    model_from_state_dict(state_dict, config=None, device="cpu", dtype=torch.float32,
                          dtype_vae=None, checkpoint_name="the checkpoint") -> model
        config None = detect it (modules.models.detect; v2 eps/v by A1111's probe). The model is built on
        the meta device and the tensors are assigned (no random init, no copy when dtype and device
        already match; cast otherwise). Keys the model does not have are ignored; missing schedule
        buffers are recomputed; missing or mis-shaped weights raise ValueError naming the first keys
        and the config tried. dtype_vae (default: dtype) is the first_stage_model's dtype.

    load_model(path, config=None, device="cpu", dtype=torch.float32, dtype_vae=None,
               text_encoder_dirs=None) -> model
        config None = `<path without extension>.yaml` beside the file if present, else detection.
        SD3 / SD3.5 (modules/models/sd3_checkpoint.py): the text encoders a file lacks come from
        text_encoder_dirs (default: models/text_encoder and models/CLIP beside models/Stable-diffusion,
        then the checkpoint's folder).
        Tensors that are converted (cast, or copied to the GPU) have their file pages released as
        they go, and tensors kept as views of the file are read in at once (madvise), so a load
        holds at most the file or the converted model plus one tensor, and returns ready to run.

    load_checkpoint(path, config=None, device=..., dtype=..., dtype_vae=None)
        -> LoadResult(model, config)   (config = the yaml path or bundled name used; the manager's call)

Detection reads only relative features, so it recognises tiny test models too, but sizes always
come from the yaml: a checkpoint with non-official sizes needs `<name>.yaml` beside it (the error
says so). The returned model follows the LatentDiffusion contract (`model.model.diffusion_model`,
`first_stage_model`, `cond_stage_model`, `parameterization`, ...), is in eval mode and has
requires_grad off.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from modules.ldm.config import build_from_config, load_config
from modules.models import detect as sd_detect
from modules.models import sd3_checkpoint, sd3_detect
from modules.models.state_dict import CheckpointRefused, MappedFile, read_state_dict, unwrap

__all__ = ["build_model", "read_state_dict", "model_from_state_dict", "load_model", "load_checkpoint",
           "LoadResult", "CheckpointRefused"]

log = logging.getLogger(__name__)
VAE_PREFIX = "first_stage_model."


@dataclass
class LoadResult:
    model: torch.nn.Module
    config: str  # yaml path or bundled config name actually used


def build_model(config, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A model with freshly initialised (or, on "meta", no) weights for `config`."""
    if isinstance(config, str) and config in sd3_detect.BUILD_NAMES:
        return sd3_checkpoint.build_layout(config, device, dtype)
    cfg = load_config(config) if isinstance(config, (str, Path)) else config
    return build_from_config(cfg, device=device, dtype=dtype)


def _settle_buffers(model: torch.nn.Module, device: torch.device) -> None:
    """Buffers the file did not provide: the schedules were computed from the yaml at build time
    (on the CPU, even for a meta build) and only move to `device`; `position_ids` (dropped by some
    re-savers) is recomputed. Anything else still on meta is a bug in the model code."""
    for name, buf in list(model.named_buffers()):
        if buf.is_meta and device.type != "meta":
            if not name.endswith("position_ids"):
                raise ValueError(f"buffer {name} is missing from the checkpoint and cannot be recomputed")
            buf = torch.arange(buf.shape[-1], dtype=buf.dtype).expand(tuple(buf.shape))
        if buf.device != device:
            buf = buf.to(device)
        module_name, _, buffer_name = name.rpartition(".")
        owner = model.get_submodule(module_name) if module_name else model
        owner._buffers[buffer_name] = buf


def _check_fit(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor],
               buffers: set[str], config_label: str, checkpoint_name: str) -> None:
    missing = [k for k in expected if k not in sd and k not in buffers]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if not (missing or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) missing ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    if wrong:
        shown = ", ".join(f"{k}: {list(sd[k].shape)} in the file, {list(expected[k].shape)} in the config"
                          for k in wrong[:3])
        parts.append(f"{len(wrong)} weight(s) with other shapes ({shown}{', ...' if len(wrong) > 3 else ''})")
    raise ValueError(
        f"{checkpoint_name} does not fit config {config_label}: {'; '.join(parts)}. If this checkpoint "
        "needs another config, put its yaml beside it with the same name (e.g. model.safetensors + model.yaml).")


def _target_dtype(key: str, expected: torch.Tensor, dtype_vae: torch.dtype) -> torch.dtype:
    """The model's own dtype (weights: the requested one, schedules: fp32, position_ids: int64),
    except the VAE's weights, which may differ (--no-half-vae)."""
    if key.startswith(VAE_PREFIX) and expected.is_floating_point():
        return dtype_vae
    return expected.dtype


def _assign(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], device, dtype_vae,
            mapped: MappedFile | None = None) -> None:
    """Tensors go in as they are (views of the mmap'd file) when dtype and device already match;
    otherwise each is converted, and for a file we mapped ourselves its pages are released at once."""
    expected = model.state_dict()
    tensors = {}
    for k, t in expected.items():
        if k not in sd:
            continue
        source = sd[k]
        tensors[k] = source.to(device=device, dtype=_target_dtype(k, t, dtype_vae))
        if mapped is None:
            continue
        if tensors[k].data_ptr() != source.data_ptr():
            mapped.release(source)
        else:
            mapped.populate(source)  # the model runs on the mapped file itself: read it in now
    model.load_state_dict(tensors, strict=False, assign=True)


def model_from_state_dict(state_dict: Mapping[str, torch.Tensor], config=None,
                          device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                          dtype_vae: torch.dtype | None = None, checkpoint_name: str = "the checkpoint"):
    return _from_state_dict(state_dict, config, device, dtype, dtype_vae, checkpoint_name).model


def _from_state_dict(state_dict, config, device, dtype, dtype_vae, checkpoint_name,
                     families=sd_detect.FAMILIES, mapped: MappedFile | None = None) -> LoadResult:
    device = torch.device(device)
    dtype_vae = dtype_vae or dtype
    sd = unwrap(state_dict)
    detection = sd_detect.detect(sd, families, filename=checkpoint_name) if config is None else None
    if detection is not None and detection.kind == "sd3":
        model = sd3_checkpoint.assemble(sd, device, dtype, dtype_vae, checkpoint_name, checkpoint_name)
        return LoadResult(model, detection.config)
    config = detection.config if detection else config
    config_label = str(config)
    model = build_model(config, device="meta", dtype=dtype)
    expected = model.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    _check_fit(expected, sd, buffers, config_label, checkpoint_name)
    ignored = [k for k in sd if k not in expected]
    if ignored:
        log.info("%s: ignoring %d keys the model does not use (%s, ...)", checkpoint_name, len(ignored), ignored[0])
    _assign(model, sd, device, dtype_vae, mapped)
    _settle_buffers(model, device)
    if detection and detection.v_config and _probe_v(model, sd):
        log.info("%s: v-prediction detected, using %s", checkpoint_name, detection.v_config)
        config = detection.v_config
        v_model = build_model(config, device="meta", dtype=dtype)
        v_model.load_state_dict(model.state_dict(), strict=True, assign=True)  # same tensors, no copy
        model = v_model
    model.eval().requires_grad_(False)
    return LoadResult(model, str(config))


def _probe_v(model, sd) -> bool:
    if next(model.model.diffusion_model.parameters()).is_meta:
        return False  # structure-only load (meta tensors): nothing to run
    width = sd_detect.context_width(sd_detect.shapes_of(sd))
    return sd_detect.is_v_prediction(model.model.diffusion_model, width)


def load_checkpoint(path: str | Path, config=None, device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32, dtype_vae: torch.dtype | None = None,
                    families: tuple[sd_detect.Family, ...] = sd_detect.FAMILIES,
                    text_encoder_dirs=None) -> LoadResult:
    """`families`: the detection table (injectable so tests can map families to tiny configs)."""
    path = Path(path)
    if config is None:
        config = sd_detect.yaml_beside(path)
    sd = read_state_dict(path)
    if config is None and sd3_detect.is_sd3(sd_detect.shapes_of(sd)):
        model = sd3_checkpoint.load_sd3(path, sd, device, dtype, dtype_vae, text_encoder_dirs)
        return LoadResult(model, model.family.name)
    return _from_state_dict(sd, config, device, dtype, dtype_vae, path.name, families, MappedFile(path))


def load_model(path: str | Path, config=None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, dtype_vae: torch.dtype | None = None,
               text_encoder_dirs=None):
    return load_checkpoint(path, config, device, dtype, dtype_vae, text_encoder_dirs=text_encoder_dirs).model
