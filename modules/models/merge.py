"""The Checkpoint Merger (A1111's tab): two or three checkpoints -> a new checkpoint file.

Methods (A1111's, M = multiplier):
- "No interpolation": A as it is (to bake in a VAE, convert to fp16 or to .safetensors);
- "Weighted sum": A * (1 - M) + B * M;
- "Add difference": A + (B - C) * M (e.g. inpainting = sd-inpainting + (custom - sd-1.5) * 1).

Works on flat state dicts, whatever the network: models are mergeable when they are the same family
(modules.models.detect tells; where it cannot, their shared weights must have equal shapes). One
difference A1111 allows: an inpainting A (9 input channels) with ordinary B / C (4) under Add
difference, where only the first 4 channels get the difference. Keys of A only (e.g. an inpainting
UNet's extra weights) are kept from A; keys matching `discard` (a regex) are left out. A VAE can be
baked in; the file is written atomically next to A's folder (.safetensors with A1111's merge
metadata, or .ckpt), with A's yaml copied beside it.

    result = merge_checkpoints(MergeRequest(primary, secondary, method="Weighted sum", multiplier=0.3),
                               out_dir, progress=print)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from modules.models import detect
from modules.models.state_dict import read_state_dict

METHODS = ("No interpolation", "Weighted sum", "Add difference")
FORMATS = ("safetensors", "ckpt")
CONFIG_SOURCES = ("A, B or C", "B", "C", "Don't")
UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
VAE_PREFIX = "first_stage_model."


@dataclass
class Source:
    """One input: its file, and the names A1111 records in the metadata."""

    path: Path
    title: str = ""
    sha256: str = ""
    legacy_hash: str = ""

    @property
    def model_name(self) -> str:
        return self.path.stem


@dataclass
class MergeRequest:
    primary: Source
    secondary: Source | None = None
    tertiary: Source | None = None
    method: str = "Weighted sum"
    multiplier: float = 0.3
    save_as_half: bool = False
    custom_name: str = ""
    checkpoint_format: str = "safetensors"
    config_source: int = 0          # index into CONFIG_SOURCES
    bake_in_vae: Path | None = None
    discard_weights: str = ""       # regex of keys to leave out
    save_metadata: bool = True
    extra_metadata: dict = field(default_factory=dict)


def check(request: MergeRequest) -> None:
    """The request's own consistency (files are checked while merging). ValueError naming the problem."""
    if request.method not in METHODS:
        raise ValueError(f"unknown merge method {request.method!r}: use one of {', '.join(METHODS)}")
    if request.checkpoint_format not in FORMATS:
        raise ValueError(f"checkpoint format must be one of {', '.join(FORMATS)}, got {request.checkpoint_format!r}")
    if request.method != "No interpolation" and request.secondary is None:
        raise ValueError(f"{request.method} needs a secondary model (B)")
    if request.method == "Add difference" and request.tertiary is None:
        raise ValueError("Add difference needs a tertiary model (C): the result is A + (B - C) x multiplier")
    if not 0.0 <= float(request.multiplier) <= 1.0 and request.method != "No interpolation":
        raise ValueError(f"the multiplier must be between 0 and 1, got {request.multiplier}")
    if request.discard_weights:
        try:
            re.compile(request.discard_weights)
        except re.error as e:
            raise ValueError(f"'discard weights' is not a valid regular expression: {e}") from None
    if request.custom_name and (os.sep in request.custom_name or "/" in request.custom_name
                                or request.custom_name.startswith(".")):
        raise ValueError("the custom name must be a plain file name (no folders, not starting with '.')")


def family_of(state_dict: dict) -> str | None:
    """The detection table's family name, or None where it cannot tell (mergeable by shapes then)."""
    try:
        return detect.detect(detect.shapes_of(state_dict)).family
    except ValueError:
        return None


def _check_families(named: dict[str, dict], method: str) -> bool:
    """Refuse models of different families; returns True for the inpainting-A + ordinary-B/C case."""
    families = {label: family_of(sd) for label, sd in named.items()}
    base = {label: (f or "").replace(" inpainting", "") for label, f in families.items()}
    if len(set(base.values())) > 1:
        described = ", ".join(f"{label} is {families[label] or 'of an unknown family'}" for label in named)
        raise ValueError(f"these checkpoints cannot be merged: {described}. Merge models of the same family "
                         "(e.g. SD 1.x with SD 1.x)")
    channels = {label: sd[UNET_IN].shape[1] for label, sd in named.items() if UNET_IN in sd}
    inpainting_a = len(set(channels.values())) > 1
    if inpainting_a:
        others = {c for label, c in channels.items() if label != "A"}
        if method != "Add difference" or channels.get("A", 0) <= max(others):
            raise ValueError("an inpainting model merges with ordinary ones only as A, with 'Add difference' "
                             f"(input channels: {', '.join(f'{k} {v}' for k, v in channels.items())})")
    for key, tensor in named["A"].items():
        for label, sd in named.items():
            if label != "A" and key in sd and sd[key].shape != tensor.shape and not (inpainting_a and key == UNET_IN):
                raise ValueError(f"these checkpoints cannot be merged: {key} is {tuple(tensor.shape)} in A but "
                                 f"{tuple(sd[key].shape)} in {label}")
    return inpainting_a


def _merge_tensor(key: str, a: torch.Tensor, b, c, method: str, m: float, inpainting_a: bool) -> torch.Tensor:
    if method == "No interpolation" or b is None or not a.is_floating_point():
        return a
    a32, b32 = a.float(), b.float()
    if method == "Weighted sum":
        return a32 * (1 - m) + b32 * m
    diff = b32 - c.float() if c is not None else b32 * 0
    if inpainting_a and key == UNET_IN:  # only the latent channels of the inpainting UNet get the difference
        out = a32.clone()
        out[:, : diff.shape[1]] += diff * m
        return out
    return a32 + diff * m


def merged_state_dict(request: MergeRequest, progress: Callable[[str], None] | None = None) -> dict:
    """The merged tensors (fp32 math, stored in A's dtype or fp16 when save_as_half)."""
    check(request)
    say = progress or (lambda text: None)
    say("reading the models")
    named = {"A": read_state_dict(request.primary.path)}
    if request.method != "No interpolation":
        named["B"] = read_state_dict(request.secondary.path)
        if request.method == "Add difference":
            named["C"] = read_state_dict(request.tertiary.path)
    inpainting_a = _check_families(named, request.method)
    discard = re.compile(request.discard_weights) if request.discard_weights else None
    m = float(request.multiplier)
    out = {}
    total = len(named["A"])
    for i, (key, a) in enumerate(named["A"].items()):
        if discard is not None and discard.search(key):
            continue
        b, c = named.get("B", {}).get(key), named.get("C", {}).get(key)
        if request.method == "Add difference" and (b is None) != (c is None):
            b = c = None  # a key in only one of B and C has no difference to add
        merged = _merge_tensor(key, a, b, c, request.method, m, inpainting_a)
        dtype = torch.float16 if request.save_as_half and a.is_floating_point() else a.dtype
        out[key] = merged.to(dtype).contiguous()
        if i % 200 == 0:
            say(f"merging: {i}/{total} tensors")
    if request.bake_in_vae is not None:
        say(f"baking in {Path(request.bake_in_vae).name}")
        _bake_vae(out, request.bake_in_vae, torch.float16 if request.save_as_half else None)
    return out


def _bake_vae(out: dict, vae_path: Path, dtype: torch.dtype | None) -> None:
    from modules.models.vae import read_vae_state_dict

    vae = read_vae_state_dict(vae_path)
    own = [k for k in out if k.startswith(VAE_PREFIX)]
    missing = [k for k in own if k[len(VAE_PREFIX):] not in vae]
    if own and len(missing) == len(own):
        raise ValueError(f"{Path(vae_path).name} does not fit these checkpoints' VAE (none of its keys match)")
    for key, tensor in vae.items():
        target = out.get(VAE_PREFIX + key)
        out[VAE_PREFIX + key] = tensor.to(dtype or (target.dtype if target is not None else tensor.dtype)).contiguous()


def output_name(request: MergeRequest) -> str:
    """The file name (without extension): the custom name, else A1111's pattern from the names and M."""
    if request.custom_name:
        return request.custom_name
    a, m = request.primary.model_name, float(request.multiplier)
    if request.method == "No interpolation":
        return f"{a}-merged"
    b = request.secondary.model_name
    if request.method == "Weighted sum":
        return f"{a}_{round(1 - m, 2)}-{b}_{round(m, 2)}-merged"
    return f"{a}_{round(1 - m, 2)}-{b}_{round(m, 2)}-{request.tertiary.model_name}-add_difference-merged"


def metadata(request: MergeRequest) -> dict[str, str]:
    """A1111's safetensors metadata: the recipe, and the models it came from by sha256."""
    recipe = {
        "type": "webui", "primary_model_hash": request.primary.sha256 or None,
        "secondary_model_hash": request.secondary.sha256 if request.secondary else None,
        "tertiary_model_hash": request.tertiary.sha256 if request.tertiary else None,
        "interp_method": request.method, "multiplier": request.multiplier, "save_as_half": request.save_as_half,
        "custom_name": request.custom_name, "config_source": request.config_source,
        "bake_in_vae": Path(request.bake_in_vae).name if request.bake_in_vae else None,
        "discard_weights": request.discard_weights, "is_inpainting": False, "is_instruct_pix2pix": False,
    }
    models = {}
    for source in (request.primary, request.secondary, request.tertiary):
        if source is not None and source.sha256:
            models[source.sha256] = {"name": source.title or source.path.name, "legacy_hash": source.legacy_hash,
                                     "sd_merge_recipe": None}
    return {"format": "pt", "sd_merge_recipe": json.dumps(recipe), "sd_merge_models": json.dumps(models),
            **{k: str(v) for k, v in request.extra_metadata.items()}}


def _write(tensors: dict, path: Path, request: MergeRequest) -> None:
    """Atomically: a hidden temp file in the target folder, then rename (a crash leaves no half file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if request.checkpoint_format == "safetensors":
            from safetensors.torch import save_file
            save_file(tensors, tmp, metadata=metadata(request) if request.save_metadata else None)
        else:
            torch.save({"state_dict": tensors}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _config_for(request: MergeRequest) -> Path | None:
    """The yaml to copy beside the result (A1111's config_source: A, B or C / B / C / don't)."""
    sources = {0: [request.primary, request.secondary, request.tertiary], 1: [request.secondary],
               2: [request.tertiary]}.get(int(request.config_source), [])
    for source in sources:
        if source is not None:
            yaml = detect.yaml_beside(source.path)
            if yaml is not None:
                return yaml
    return None


def merge_checkpoints(request: MergeRequest, out_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Merge and write; returns the new file's path. Refuses to overwrite an existing file."""
    check(request)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{output_name(request)}.{request.checkpoint_format}"
    if path.exists():
        raise ValueError(f"{path.name} already exists in {out_dir}: choose another custom name")
    tensors = merged_state_dict(request, progress)
    (progress or (lambda text: None))(f"saving {path.name}")
    _write(tensors, path, request)
    yaml = _config_for(request)
    if yaml is not None:
        shutil.copyfile(yaml, path.with_suffix(".yaml"))
    return path


def describe(request: MergeRequest) -> dict:
    """The request as plain data (for logs and the UI's result text)."""
    data = asdict(request)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
