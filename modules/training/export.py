"""Write a trained model as an SD-v1 layout checkpoint (fp16 safetensors) with its yaml, and read it back.

The file holds exactly the keys of a pruned SD checkpoint (`model.diffusion_model.*`,
`first_stage_model.*`, `cond_stage_model.transformer.text_model.*`, the DDPM schedule buffers),
so the app loads it through its normal loader. Weights are fp16; the schedule buffers stay float32
(fp16 would move sigma_min by ~30%) and position_ids int64, as in the originals.
"""
from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from modules.atomic import atomic_write_text

DEMO_DIR = Path(__file__).resolve().parents[2] / "models" / "Stable-diffusion" / "demo"
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
                    "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
                    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


def is_schedule_buffer(key: str) -> bool:
    """The model's schedule, or the x4 upscaler's noise-augmentation schedule (low_scale_model.*)."""
    return key.rsplit(".", 1)[-1] in SCHEDULE_BUFFERS


def checkpoint_tensors(model, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and not is_schedule_buffer(key):
            value = value.to(dtype)
        out[key] = value.detach().contiguous().cpu()
    return out


def export(model, config: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    """model + its yaml dict -> path (.safetensors) and path with .yaml beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(checkpoint_tensors(model), str(tmp), metadata=metadata)
    tmp.replace(path)  # atomic: the app never sees a half-written model
    atomic_write_text(path.with_suffix(".yaml"), yaml.safe_dump(config, sort_keys=False))


def load_demo_model(yaml_path: Path | None = None, dtype: torch.dtype = torch.float32):
    """The model a yaml + safetensors pair (default: the shipped demo) describe, weights loaded, eval mode."""
    from modules.ldm.config import build_from_config

    yaml_path = Path(yaml_path) if yaml_path is not None else DEMO_DIR / "demo.yaml"
    weights = yaml_path.with_suffix(".safetensors")
    if not weights.is_file():
        raise ValueError(f"no weights at {weights}: train the demo model with `python -m modules.training.demo`")
    model = build_from_config(yaml_path, device="meta")
    state = {k: (v.to(dtype) if v.is_floating_point() and not is_schedule_buffer(k) else v)
             for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
