"""Which config fits a checkpoint: a yaml beside the file, else a table of families.

Order of precedence (A1111's):
1. `<checkpoint basename>.yaml` next to the checkpoint file.
2. The first entry of `FAMILIES` whose test matches the state dict's key names and shapes.
   The tests only look at *relative* features (latent input channels 4/9/5/7, which text encoder
   layout, conv vs linear `proj_in`, depth/x4 keys), so they also recognise the tiny test models.
3. eps vs v prediction is not in the weights: for the v2 family `is_v_prediction` runs A1111's probe
   on the loaded UNet.
SD3 / SD3.5 files (MMDiT) are recognised first (modules/sd3_detect.py: the variant from the shapes,
config derived from the weights, no yaml needed): Detection(kind="sd3", config=<variant>).

Sizes always come from the yaml. A checkpoint whose sizes differ from the official ones (the tiny test
models, odd fine-tunes) therefore needs its own yaml beside it; without one, loading fails with an
error that names the mismatching keys, the config tried and this remedy.

Layouts we do not support yet (SDXL, Flux, a LoRA or VAE put in the wrong folder, ...) raise
`ValueError("not supported yet: this looks like SDXL ...")` instead of failing deep in the loader.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import torch
from safetensors import SafetensorError, safe_open

from modules.models import family as model_family
from modules.models import sd3_detect

UNET = "model.diffusion_model."
V1_TEXT = "cond_stage_model.transformer."
V2_TEXT = "cond_stage_model.model."
Shapes = Mapping[str, tuple]


@dataclass(frozen=True)
class Family:
    name: str
    config: str  # bundled config name (configs/<config>.yaml)
    matches: Callable[[Shapes], bool]
    v_config: str | None = None  # config to use when the v-prediction probe says "v"


@dataclass(frozen=True)
class Detection:
    family: str
    config: str
    v_config: str | None = None
    kind: str = "ldm"  # "ldm": config is a yaml name; "sd3": config is an SD3 variant, built from the shapes


def shapes_of(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, "shape")}


def _in_channels(s: Shapes) -> int | None:
    shape = s.get(UNET + "input_blocks.0.0.weight")
    return shape[1] if shape and len(shape) == 4 else None


def _generation(s: Shapes) -> int | None:
    """1 for the CLIP ViT-L text encoder layout, 2 for OpenCLIP; from the UNet if the text encoder is absent."""
    if any(k.startswith(V1_TEXT) for k in s):
        return 1
    if any(k.startswith(V2_TEXT) for k in s):
        return 2
    proj_in = next((shape for k, shape in s.items() if k.startswith(UNET) and k.endswith("proj_in.weight")), None)
    if proj_in is None:
        return None
    return 1 if len(proj_in) == 4 else 2  # v1: 1x1 conv, v2: linear (use_linear_in_transformer)


def _has_prefix(s: Shapes, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in s)


FAMILIES: tuple[Family, ...] = (
    Family("x4 upscaler", "x4-upscaling",
           lambda s: _in_channels(s) == 7 and UNET + "label_emb.weight" in s),
    Family("v2 depth", "v2-midas-inference",
           lambda s: _generation(s) == 2 and (_in_channels(s) == 5 or _has_prefix(s, "depth_model."))),
    Family("v2 inpainting", "v2-inpainting-inference",
           lambda s: _generation(s) == 2 and _in_channels(s) == 9),
    Family("v2", "v2-inference", lambda s: _generation(s) == 2 and _in_channels(s) == 4,
           v_config="v2-inference-v"),
    Family("v1 inpainting", "v1-inpainting-inference",
           lambda s: _generation(s) == 1 and _in_channels(s) == 9),
    Family("v1", "v1-inference", lambda s: _generation(s) == 1 and _in_channels(s) == 4),
)


def _label_emb_width(s: Shapes) -> int | None:
    shape = s.get(UNET + "label_emb.0.0.weight")
    return shape[1] if shape else None


# (what it looks like, test). Checked before FAMILIES so that e.g. SDXL is never half-matched as v2.
UNSUPPORTED: tuple[tuple[str, Callable[[Shapes], bool]], ...] = (
    ("SDXL refiner", lambda s: _label_emb_width(s) == 2560),
    ("SDXL", lambda s: _has_prefix(s, "conditioner.embedders.") or _label_emb_width(s) == 2816),
    ("SD 2.x unCLIP", lambda s: _has_prefix(s, "embedder.model.visual.") or _has_prefix(s, "noise_augmentor.")),
    ("an SD3 diffusion model without its VAE and prefix (ComfyUI's diffusion_models layout); use the "
     "single-file checkpoint (model.diffusion_model.* + first_stage_model.*)", sd3_detect.is_bare_mmdit),
    ("Flux", lambda s: _has_prefix(s, UNET + "double_blocks.") or _has_prefix(s, "double_blocks.")),
    ("InstructPix2Pix (8 input channels)", lambda s: _in_channels(s) == 8),
    ("a LoRA/LyCORIS network (put it in models/Lora)",
     lambda s: any(k.startswith(("lora_unet_", "lora_te_")) or ".lora_down." in k or ".lora_A." in k for k in s)),
    ("a diffusers-format model (convert it to a single .safetensors checkpoint)",
     lambda s: _has_prefix(s, "down_blocks.") or _has_prefix(s, "text_model.encoder.")),
    ("a VAE (put it in models/VAE)",
     lambda s: "encoder.conv_in.weight" in s and "decoder.conv_out.weight" in s and not _has_prefix(s, UNET)),
)


def detect(state_dict_or_shapes: Mapping, families: tuple[Family, ...] = FAMILIES,
           filename: str | None = None) -> Detection:
    """Pick the bundled config for a state dict (tensors or a key -> shape mapping).

    `families` is the table to match (tests pass one whose configs are the tiny yamls); `filename`
    tells SD3.5 Large Turbo from Large (same layout)."""
    s = state_dict_or_shapes
    if s and not isinstance(next(iter(s.values())), tuple):
        s = shapes_of(s)
    if sd3_detect.is_sd3(s):
        variant = sd3_detect.variant(s, filename)
        title = sd3_detect.describe(model_family.FAMILIES[variant].title, sd3_detect.encoders_in(s))
        return Detection(title, variant, kind="sd3")
    for looks_like, test in UNSUPPORTED:
        if test(s):
            raise ValueError(f"not supported yet: this looks like {looks_like}, and this version loads "
                             "Stable Diffusion v1.x / v2.x and SD3 / SD3.5 checkpoints only")
    for family in families:
        if family.matches(s):
            return Detection(family.name, family.config, family.v_config)
    first = ", ".join(list(s)[:3]) or "no tensors at all"
    raise ValueError(
        "not supported yet: this does not look like a Stable Diffusion v1/v2 checkpoint "
        f"(input channels {_in_channels(s)}, first keys: {first}). If it is one, put a yaml config "
        "with the checkpoint's name beside it.")


def file_family(path: str | Path) -> str | None:
    """What a .safetensors checkpoint is ("SD 1.x", "SD3.5 Medium (no text encoders in the file)", ...),
    from its header alone (shapes; no tensor is read): the catalog shows it. None when it cannot be told
    (a .ckpt, an unreadable or unsupported file)."""
    if Path(path).suffix.lower() != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        detection = detect(shapes, filename=Path(path).name)
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError):  # any damaged header
        return None
    family = model_family.for_config(detection.config)
    if detection.kind == "sd3" or family is None:
        return detection.family
    return family.title + (" or " + model_family.for_config(detection.v_config).title if detection.v_config else "")


def yaml_beside(checkpoint: str | Path) -> Path | None:
    """`models/Stable-diffusion/foo.safetensors` -> `models/Stable-diffusion/foo.yaml` if it exists."""
    path = Path(checkpoint)
    for candidate in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        if candidate.is_file():
            return candidate
    return None


def context_width(s: Shapes) -> int:
    """Cross-attention context width (768 for v1, 1024 for v2) read from the first attn2.to_k."""
    for key, shape in s.items():
        if key.startswith(UNET) and key.endswith("attn2.to_k.weight"):
            return shape[1]
    raise ValueError("cannot find a cross-attention layer (attn2.to_k.weight) in the UNet")


@torch.no_grad()
def is_v_prediction(unet: torch.nn.Module, context_dim: int) -> bool:
    """A1111's probe: a v-model's output at t=999 on a flat 0.5 image lies far below the input.

    x = 0.5*ones(1,4,8,8), t = 999, context = 0.5*ones(1,2,context_dim); v if mean(out - x) < -1.
    Runs on the UNet's own device and dtype.
    """
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    x = torch.full((1, 4, 8, 8), 0.5, device=device, dtype=dtype)
    t = torch.tensor([999], device=device)
    context = torch.full((1, 2, context_dim), 0.5, device=device, dtype=dtype)
    out = unet(x, t, context=context)
    return (out.float() - x.float()).mean().item() < -1
