"""Read a model yaml in the original LDM schema and build our networks from it.

A config is a bundled name (`v1-inference`, ..., see BUNDLED_CONFIGS), a path to a user's yaml, or
an already loaded dict / OmegaConf. Each `target:` string of the original code maps to one of our
builders through the tables below; an unknown target is a ValueError naming it.

    model = build_from_config("v1-inference", device="meta")   # nothing allocated but 12 schedules
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .attention import AttentionFn, sdpa_attention
from .autoencoder import AutoencoderConfig, AutoencoderKL
from .bert_embedder import build_bert_embedder
from .class_embedder import build_class_embedder, build_identity
from .clip_text import build_clip_embedder, build_open_clip_embedder
from .latent_diffusion import (
    DiffusionConfig,
    ImageConcatWithNoiseAugmentation,
    LatentDepth2ImageDiffusion,
    LatentDiffusion,
    LatentInpaintDiffusion,
    LatentUpscaleDiffusion,
)
from .unet import UNetConfig, UNetModel
from .vqgan import VQConfig, VQModel, VQModelInterface

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
BUNDLED_CONFIGS = ("v1-inference", "v1-inpainting-inference", "v2-inference", "v2-inference-v",
                   "v2-inpainting-inference", "v2-midas-inference", "x4-upscaling")

MODEL_TARGETS = {  # model.target -> wrapper class
    "ldm.models.diffusion.ddpm.LatentDiffusion": LatentDiffusion,
    "ldm.models.diffusion.ddpm.LatentInpaintDiffusion": LatentInpaintDiffusion,
    "ldm.models.diffusion.ddpm.LatentDepth2ImageDiffusion": LatentDepth2ImageDiffusion,
    "ldm.models.diffusion.ddpm.LatentUpscaleDiffusion": LatentUpscaleDiffusion,
}
UNET_TARGETS = {"ldm.modules.diffusionmodules.openaimodel.UNetModel"}
VAE_TARGETS = {  # first_stage_config.target (or a zoo yaml's model.target) -> (class, config class)
    "ldm.models.autoencoder.AutoencoderKL": (AutoencoderKL, AutoencoderConfig),
    "ldm.models.autoencoder.VQModelInterface": (VQModelInterface, VQConfig),  # LDMs: quantize at decode
    "ldm.models.autoencoder.VQModel": (VQModel, VQConfig),  # the zoo files: quantize at encode
}
TEXT_TARGETS = {
    "ldm.modules.encoders.modules.FrozenCLIPEmbedder": build_clip_embedder,
    "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder": build_open_clip_embedder,
    "ldm.modules.encoders.modules.ClassEmbedder": build_class_embedder,  # cin256-v2
    "ldm.modules.encoders.modules.BERTEmbedder": build_bert_embedder,  # txt2img-f8-large (1p4B)
    "torch.nn.Identity": build_identity,  # LDSR (bsr_sr): the low-res image is the conditioning
}
LOW_SCALE_TARGETS = {"ldm.modules.diffusionmodules.upscaling.ImageConcatWithNoiseAugmentation"}
# depth2img's MiDaS lives in modules/ldm/midas.py: `build_depth_model(params: dict) -> nn.Module`
DEPTH_TARGETS = {"ldm.modules.midas.api.MiDaSInference": "modules.ldm.midas:build_depth_model"}
KNOWN_UNSUPPORTED = {  # target prefix -> what it is, for the error message
    "sgm.": "an SDXL / SD3-era (sgm) model",
    "ldm.models.diffusion.ddpm.ImageEmbeddingConditionedLatentDiffusion": "an unCLIP model",
    "ldm.models.diffusion.ddpm.LatentFinetuneDiffusion": "a fine-tuning config",
}


def load_config(config: Union[str, Path, dict, DictConfig]) -> dict:
    """Bundled name, yaml path, dict or OmegaConf -> plain dict of the whole yaml."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)
    if isinstance(config, dict):
        return config
    path = Path(config)
    if not path.suffix and str(config) in BUNDLED_CONFIGS:
        path = CONFIGS_DIR / f"{config}.yaml"
    if not path.is_file():
        raise ValueError(f"model config {str(config)!r} not found: give a yaml path or one of {', '.join(BUNDLED_CONFIGS)}")
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # yaml syntax errors come in many types
        raise ValueError(f"model config {path}: not readable yaml ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ValueError(f"model config {path}: no `model:` section; is this an LDM/SD yaml?")
    return data


def _target(section: Optional[dict], what: str, known) -> str:
    if not isinstance(section, dict) or "target" not in section:
        raise ValueError(f"model config: `{what}` with a `target:` is missing")
    target = section["target"]
    if target not in known:
        for prefix, kind in KNOWN_UNSUPPORTED.items():
            if target.startswith(prefix):
                raise ValueError(f"model config: {target} is {kind}; not supported yet (SD v1/v2 only)")
        raise ValueError(f"model config: unknown {what} target {target!r}; supported: {', '.join(sorted(known))}")
    return target


def _import(spec: str) -> Optional[Callable]:
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None


def _build_depth_model(section: Optional[dict]):
    if section is None:
        return None
    builder = _import(DEPTH_TARGETS[_target(section, "depth_stage_config", DEPTH_TARGETS)])
    if builder is None:
        log.warning("depth model (MiDaS) not available: modules/ldm/midas.py is missing; built without depth_model")
        return None
    return builder(section.get("params") or {})


def _build_networks(params: dict, attention: AttentionFn) -> dict:
    unet = params.get("unet_config")
    _target(unet, "unet_config", UNET_TARGETS)
    vae = params.get("first_stage_config")
    text = params.get("cond_stage_config")
    text_builder = TEXT_TARGETS[_target(text, "cond_stage_config", TEXT_TARGETS)]
    return {
        "unet": UNetModel(UNetConfig.from_params(unet.get("params") or {}), attention),
        "first_stage_model": _build_first_stage(vae, "first_stage_config"),
        "cond_stage_model": text_builder(text.get("params")),
    }


def _build_first_stage(section: Optional[dict], what: str) -> nn.Module:
    cls, config_cls = VAE_TARGETS[_target(section, what, VAE_TARGETS)]
    return cls(config_cls.from_params(section.get("params") or {}))


def _build_low_scale_model(section: Optional[dict]) -> ImageConcatWithNoiseAugmentation:
    _target(section, "low_scale_config", LOW_SCALE_TARGETS)
    p = section.get("params") or {}
    sched = p.get("noise_schedule_config") or {}
    return ImageConcatWithNoiseAugmentation(sched.get("linear_start", 1e-4), sched.get("linear_end", 2e-2),
                                            sched.get("timesteps", 1000), p.get("max_noise_level", 1000))


def _build(cfg: dict, attention: AttentionFn) -> LatentDiffusion:
    model_section = cfg["model"]
    cls = MODEL_TARGETS[_target(model_section, "model", MODEL_TARGETS)]
    params = model_section.get("params") or {}
    args: dict[str, Any] = {"config": DiffusionConfig.from_params(params), **_build_networks(params, attention)}
    if cls is LatentUpscaleDiffusion:
        args["low_scale_model"] = _build_low_scale_model(params.get("low_scale_config"))
    if cls is LatentDepth2ImageDiffusion:
        args["depth_model"] = _build_depth_model(params.get("depth_stage_config"))
    return cls(**args)


def build_from_config(config: Union[str, Path, dict, DictConfig], device: Union[str, torch.device] = "cpu",
                      dtype: torch.dtype = torch.float32, attention: AttentionFn = sdpa_attention) -> LatentDiffusion:
    """The LatentDiffusion-compatible model of a yaml, in eval mode, random-initialised.

    device="meta": no weight memory (load with load_state_dict(assign=True)); the schedule buffers
    are still computed, on the CPU. The weights get `dtype`; the schedule buffers stay float32.
    """
    cfg = load_config(config)
    device = torch.device(device)
    with torch.device(device):
        model = _build(cfg, attention)
    if device.type == "meta":
        model.register_schedule("cpu")
        if hasattr(model, "low_scale_model"):
            model.low_scale_model.register_schedule("cpu")
    for net in model.networks():
        net.to(dtype)
    return model.eval().requires_grad_(False)


def build_first_stage_from_config(config: Union[str, Path, dict, DictConfig], device: Union[str, torch.device] = "cpu",
                                  dtype: torch.dtype = torch.float32) -> nn.Module:
    """A first-stage zoo yaml (model.target VQModel or AutoencoderKL, e.g. vq-f4.yaml) -> the
    autoencoder alone, eval mode, random-initialised; load its file with drop_training_keys applied."""
    cfg = load_config(config)
    with torch.device(torch.device(device)):
        model = _build_first_stage(cfg["model"], "model")
    return model.to(dtype).eval().requires_grad_(False)
