"""The LDSR model files: A1111's names and rules, loaded safely.

A folder holds `model.safetensors` (preferred when present) or `model.ckpt` (a Lightning checkpoint:
read with torch.load(weights_only=True) only; a pickle that would run code is refused), and
`project.yaml`, the original latent-diffusion config (a yaml of 10 MiB or more is a failed download,
as A1111 judges). Without project.yaml the bundled configs/ldm/bsr_sr.yaml (the same model) is used.

Weights: when the file holds the EMA copy (`model_ema.*`, one per UNet parameter, named
"diffusion_model" + the parameter name without dots) and the yaml leaves `use_ema` on (the default),
the EMA weights replace the UNet's, as A1111 samples inside the model's ema_scope. Every other key is
loaded as it is; the schedule buffers, when absent, are computed from the yaml.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from modules.ldm.config import build_from_config, load_config
from modules.models.state_dict import read_pickle, read_safetensors

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_YAML = ROOT / "configs" / "ldm" / "bsr_sr.yaml"
MODEL_NAMES = ("model.safetensors", "model.ckpt")
YAML_NAME = "project.yaml"
YAML_SIZE_LIMIT = 10 * 1024 * 1024  # A1111 deletes a project.yaml this large as a bad download
EMA_PREFIX = "model_ema."
SCHEDULE_KEYS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                 "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                 "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                 "posterior_mean_coef1", "posterior_mean_coef2")


@dataclass(frozen=True)
class LDSRFiles:
    model: Path
    config: Path


def find_files(folder: Path) -> Optional[LDSRFiles]:
    """The model file in `folder` and its yaml (project.yaml, else the bundled bsr_sr.yaml); None when
    the folder has no model file."""
    for name in MODEL_NAMES:
        path = Path(folder) / name
        if path.is_file():
            yaml = path.with_name(YAML_NAME)
            return LDSRFiles(path, yaml if yaml.is_file() else BUNDLED_YAML)
    return None


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors as a flat dict, `model_ema.*` kept (the generic reader drops them)."""
    data = read_safetensors(path) if path.suffix == ".safetensors" else read_pickle(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a checkpoint: it holds a {type(data).__name__}, not a dict of tensors")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def ema_key(unet_param: str) -> str:
    """LitEma's buffer name for model.diffusion_model.<unet_param>."""
    return EMA_PREFIX + ("diffusion_model." + unet_param).replace(".", "")


def apply_ema(state: dict[str, torch.Tensor], unet_params: list[str]) -> bool:
    """Replace the UNet weights in `state` by their EMA copies when the file has them; True if it did."""
    ema = {k for k in state if k.startswith(EMA_PREFIX) and k not in ("model_ema.decay", "model_ema.num_updates")}
    if not ema:
        return False
    missing = [p for p in unet_params if ema_key(p) not in state]
    if missing:
        raise ValueError(f"the checkpoint's EMA weights are incomplete ({len(missing)} of {len(unet_params)} UNet "
                         f"parameters missing, e.g. {ema_key(missing[0])}); the file is damaged")
    for p in unet_params:
        state["model.diffusion_model." + p] = state[ema_key(p)]
    return True


def check_yaml(path: Path) -> None:
    if path.stat().st_size >= YAML_SIZE_LIMIT:
        raise ValueError(f"{path} is {path.stat().st_size // 2**20} MiB: not a config but a failed download; "
                         "delete it and download project.yaml again")


def load_ldsr(files: LDSRFiles, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The LatentDiffusion model of an LDSR model file + yaml, EMA weights applied, eval mode."""
    check_yaml(files.config)
    cfg = load_config(files.config)
    model = build_from_config(cfg, device="meta")
    state = read_checkpoint(files.model)
    unet_params = [name for name, _ in model.model.diffusion_model.named_parameters()]
    if (cfg["model"].get("params") or {}).get("use_ema", True):
        apply_ema(state, unet_params)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in SCHEDULE_KEYS]
    if missing:
        raise ValueError(f"{files.model.name} does not fit {files.config.name}: {len(missing)} weights missing "
                         f"(e.g. {missing[0]}); is it the LDSR model (bsr_sr) with its project.yaml?")
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise ValueError(f"{files.model.name} does not fit {files.config.name}: {wrong[0][0]} has shape {wrong[0][1]}, "
                         f"the yaml says {wrong[0][2]}")
    weights = {k: state[k].to(dtype) for k in expected if k in state and k not in SCHEDULE_KEYS}
    model.load_state_dict(weights, strict=False, assign=True)
    return model.to(device).eval().requires_grad_(False)
