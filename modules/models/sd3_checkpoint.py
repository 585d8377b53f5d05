"""Loading SD3 / SD3.5 checkpoints: the file, the text encoders it lacks, the T5 tokenizer.

- All-in-one files (`sd3_medium_incl_clips*.safetensors`) carry CLIP-L/G (and T5); the official SD3.5
  files and `sd3_medium.safetensors` carry only MMDiT + VAE. Missing encoders are taken from the
  text encoder folders (`models/text_encoder/`, and `models/CLIP/` where A1111 keeps them, then the
  checkpoint's own folder), recognised by their shapes, not only their names: CLIP-L and CLIP-G are the
  CLIP-layout files whose widths fit the MMDiT's pooled input (768 + 1280 = 2048), T5 is the T5-layout
  file whose width is the MMDiT's context width (4096). Names only break ties (clip_l*, clip_g*, t5*;
  fp16/bf16 before fp8).
- CLIP-L and CLIP-G are required: without them loading fails with a message naming the file to put
  where. T5 is optional: without its weights or its tokenizer the model runs on CLIP-L/G with a
  zero T5 part (modules/ldm/sd3_text.py) and `model.notes` says so (the UI shows it).
- The T5 tokenizer (google/t5-v1_1-xxl's `spiece.model` or a `tokenizer.json`, Apache-2.0) is read
  from the text encoder folders, else from the Hugging Face cache, else downloaded once through
  huggingface_hub when online.
- Everything is memory-mapped and assigned into a model built on the meta device: tensors whose dtype
  and device already fit are used in place (no copy); converted ones release their file pages as they
  go. T5 keeps its storage dtype (fp16, bf16 or fp8) and is upcast per layer when it runs.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch
from safetensors import SafetensorError, safe_open

from modules.ldm.clip_text import TextConfig
from modules.ldm.mmdit import MMDiTConfig
from modules.ldm.sd3 import ENCODER_PREFIX, SD3, SD3_VAE, SD3Config, build_sd3
from modules.ldm.sd3_text import CLIP_G_DEFAULTS, CLIP_L_DEFAULTS
from modules.ldm.t5 import T5Config
from modules.ldm.t5_tokenizer import T5Tokenizer
from modules.models import family as model_family
from modules.models import sd3_detect
from modules.models.state_dict import MappedFile, read_state_dict

log = logging.getLogger(__name__)

T5_TOKENIZER_REPO, T5_TOKENIZER_FILE = "google/t5-v1_1-xxl", "spiece.model"
T5_EMBEDDINGS = ("shared.weight", "encoder.embed_tokens.weight")  # one table, stored under both names
CLIP_KEY = "text_model.embeddings.token_embedding.weight"
T5_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
ENCODER_FILES = {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}
ENCODER_SOURCE = "stabilityai/stable-diffusion-3.5-large, folder text_encoders/"


def build_layout(name: str, device="cpu", dtype: torch.dtype = torch.float32) -> SD3:
    """The full-size SD3 layout `name` (sd3_detect.BUILD_NAMES), with the encoders its file holds."""
    variant, encoders = sd3_detect.BUILD_NAMES[name]
    config = SD3Config(sd3_detect.MMDIT_CONFIGS[variant], SD3_VAE,
                       TextConfig(**CLIP_L_DEFAULTS) if "clip_l" in encoders else None,
                       TextConfig(**CLIP_G_DEFAULTS) if "clip_g" in encoders else None,
                       T5Config() if "t5xxl" in encoders else None)
    return build_sd3(config, device=device, dtype=dtype, family=model_family.FAMILIES[variant])


def text_encoder_dirs_for(checkpoint: str | Path) -> list[Path]:
    """`<models>/text_encoder`, `<models>/CLIP` for a checkpoint under `<models>/Stable-diffusion/`,
    then the checkpoint's own folder."""
    path = Path(checkpoint).resolve()
    dirs = []
    for parent in path.parents:
        if parent.name == "Stable-diffusion":
            dirs += [parent.parent / "text_encoder", parent.parent / "CLIP"]
            break
    return dirs + [path.parent]


@dataclass
class EncoderFile:
    path: Path
    kind: str  # "clip" or "t5"
    shapes: dict[str, tuple]
    prefix: str  # what the file puts before `text_model.` / `encoder.`
    fp8: bool = False

    @property
    def width(self) -> int:
        """CLIP: the hidden width; T5: d_model."""
        return self.shapes[self.prefix + (CLIP_KEY if self.kind == "clip" else T5_KEY)][1]

    @property
    def projection(self) -> Optional[int]:
        shape = self.shapes.get(self.prefix + "text_projection.weight")
        return shape[0] if shape else None


def _header(path: Path) -> tuple[dict[str, tuple], set[str]]:
    with safe_open(str(path), framework="pt", device="cpu") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    return shapes, dtypes


ENCODER_FILE_PREFIXES = ("", "transformer.")  # separate encoder files: bare transformers keys, or one wrapper


def classify(path: Path) -> Optional[EncoderFile]:
    """A separate CLIP (transformers layout) or T5 encoder file, from its header; None for anything else
    (whole checkpoints included: their encoders are not taken apart). Raises ValueError for a file that
    cannot be read."""
    try:
        shapes, dtypes = _header(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path.name} in {path.parent} cannot be read ({e}); download it again") from e
    for key, kind in ((CLIP_KEY, "clip"), (T5_KEY, "t5")):
        for prefix in ENCODER_FILE_PREFIXES:
            if prefix + key in shapes:
                return EncoderFile(path, kind, shapes, prefix, fp8=any("F8" in d for d in dtypes))
    return None


def scan(dirs: Sequence[Path]) -> tuple[list[EncoderFile], list[str]]:
    """Encoder files in `dirs` (not recursive), and the problems met (unreadable files)."""
    found, problems, seen = [], [], set()
    for folder in dirs:
        if not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.safetensors")):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                entry = classify(path)
            except ValueError as e:
                problems.append(str(e))
                continue
            if entry is not None:
                found.append(entry)
    return found, problems


def _prefers(name: str):
    return lambda f: (name not in f.path.name.lower(), f.fp8, f.path.name.lower())


def choose_encoders(files: list[EncoderFile], mmdit: MMDiTConfig, have: Mapping[str, Optional[int]]) -> dict[str, EncoderFile]:
    """Pick the files for the encoders the checkpoint lacks. `have`: encoders already in the checkpoint
    -> their pooled width (CLIP-L width, CLIP-G projection width). CLIP-L width + CLIP-G projection
    must equal the MMDiT's pooled input; T5's width its context input."""
    clips = [f for f in files if f.kind == "clip"]
    chosen: dict[str, EncoderFile] = {}
    if "clip_l" not in have or "clip_g" not in have:
        pairs = []
        for g in (clips if "clip_g" not in have else [None]):
            g_width = g.projection if g is not None else have["clip_g"]
            if g_width is None:
                continue
            for candidate in (clips if "clip_l" not in have else [None]):
                l_width = candidate.width if candidate is not None else have["clip_l"]
                if candidate is not g and l_width + g_width == mmdit.adm_in_channels:
                    pairs.append((candidate, g))
        def by_name(pair):
            return (_prefers("clip_l")(pair[0]) if pair[0] else (), _prefers("clip_g")(pair[1]) if pair[1] else ())

        for candidate, g in sorted(pairs, key=by_name)[:1]:
            chosen.update({name: f for name, f in (("clip_l", candidate), ("clip_g", g)) if f is not None})
    if "t5xxl" not in have:
        t5s = sorted((f for f in files if f.kind == "t5" and f.width == mmdit.context_in_features), key=_prefers("t5"))
        if t5s:
            chosen["t5xxl"] = t5s[0]
    return chosen


def missing_encoder_message(missing: list[str], checkpoint: str, dirs: Sequence[Path], problems: list[str]) -> str:
    files = " and ".join(ENCODER_FILES[name] for name in missing)
    where = str(dirs[0]) if dirs else "models/text_encoder"
    also = f" (or {dirs[1]}, A1111's folder)" if len(dirs) > 1 else ""
    text = (f"{checkpoint} is an SD3 model without its {' and '.join(sd3_detect.ENCODER_TITLES[m] for m in missing)} "
            f"text encoder: put {files} (from {ENCODER_SOURCE}) into {where}{also} and load it again.")
    if problems:
        text += " Files there that could not be read: " + "; ".join(problems)
    return text


def _hub_tokenizer() -> Optional[Path]:
    """spiece.model from the Hugging Face cache, or downloaded once (huggingface_hub) when online."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    try:
        return Path(hf_hub_download(T5_TOKENIZER_REPO, T5_TOKENIZER_FILE, local_files_only=True))
    except Exception:  # not cached (huggingface_hub raises several error types)
        pass
    try:
        return Path(hf_hub_download(T5_TOKENIZER_REPO, T5_TOKENIZER_FILE))
    except Exception as e:  # offline, blocked, or HF_HUB_OFFLINE
        log.info("T5 tokenizer not downloaded: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None


hub_tokenizer = functools.lru_cache(maxsize=1)(_hub_tokenizer)  # one try per process


def find_t5_tokenizer(dirs: Sequence[Path], download: Callable[[], Optional[Path]] = hub_tokenizer) -> Optional[T5Tokenizer]:
    """spiece.model or tokenizer.json in a text encoder folder (or one level below), else `download()`."""
    for folder in dirs:
        for pattern in ("spiece.model", "tokenizer.json", "*/spiece.model", "*/tokenizer.json"):
            for path in sorted(Path(folder).glob(pattern)) if Path(folder).is_dir() else []:
                try:
                    return T5Tokenizer(path)
                except Exception as e:  # a CLIP tokenizer.json, a damaged file: keep looking
                    log.debug("%s is not a T5 tokenizer: %s", path, e)
    path = download()
    return T5Tokenizer(path) if path is not None else None


T5_TOKENIZER_HELP = (f"put {T5_TOKENIZER_FILE} (or tokenizer.json) of {T5_TOKENIZER_REPO} into the text encoder "
                     "folder")


@dataclass
class Sources:
    """Where each part of the state dict comes from (file name per prefix) and the open mappings."""
    names: dict[str, str] = field(default_factory=dict)
    mapped: list = field(default_factory=list)

    def release(self, tensor: torch.Tensor) -> None:
        for m in self.mapped:
            m.release(tensor)

    def populate(self, tensor: torch.Tensor) -> None:
        for m in self.mapped:
            m.populate(tensor)


def _target_dtype(key: str, expected: torch.Tensor, source: torch.Tensor, dtype: torch.dtype,
                  dtype_vae: torch.dtype) -> torch.dtype:
    if not expected.is_floating_point():
        return expected.dtype
    if key.startswith(ENCODER_PREFIX["t5xxl"]):
        return source.dtype  # storage dtype kept, upcast per layer when it runs
    return dtype_vae if key.startswith("first_stage_model.") else dtype


def _check_fit(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor], label: str) -> None:
    missing = [k for k in expected if k not in sd]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or wrong:
        shown = ", ".join(missing[:3] + [f"{k}: {list(sd[k].shape)} in the file, {list(expected[k].shape)} expected"
                                         for k in wrong[:3]])
        raise ValueError(f"{label} is not a complete SD3 checkpoint: {len(missing)} weight(s) missing and "
                         f"{len(wrong)} with other shapes than its own layout implies ({shown}). Download it again.")


def assemble(sd: Mapping[str, torch.Tensor], device, dtype: torch.dtype, dtype_vae: Optional[torch.dtype],
             checkpoint_name: str, filename: Optional[str] = None, sources: Optional[Sources] = None) -> SD3:
    """The SD3 model of a complete state dict (MMDiT + VAE + whatever encoders it holds)."""
    device = torch.device(device)
    dtype_vae = dtype_vae or dtype
    sd = dict(sd)
    t5 = ENCODER_PREFIX["t5xxl"]
    for have, want in (T5_EMBEDDINGS, T5_EMBEDDINGS[::-1]):  # re-saves keep only one of the two names
        if t5 + have in sd and t5 + want not in sd:
            sd[t5 + want] = sd[t5 + have]
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    variant = sd3_detect.variant(shapes, filename)
    model = build_sd3(SD3Config.from_shapes(shapes), device="meta", dtype=dtype, family=model_family.FAMILIES[variant])
    expected = model.state_dict()
    _check_fit(expected, sd, checkpoint_name)
    ignored = [k for k in sd if k not in expected]
    if ignored:
        log.info("%s: ignoring %d keys the model does not use (%s, ...)", checkpoint_name, len(ignored), ignored[0])
    tensors = {}
    for key, t in expected.items():
        if key == t5 + T5_EMBEDDINGS[1]:
            continue  # the T5 table is one module under two names: assign one tensor, not two
        source = sd[key]
        tensors[key] = source.to(device=device, dtype=_target_dtype(key, t, source, dtype, dtype_vae))
        if sources is not None:
            if tensors[key].data_ptr() != source.data_ptr():
                sources.release(source)
            else:
                sources.populate(source)
    model.load_state_dict(tensors, strict=False, assign=True)
    return model.eval().requires_grad_(False)


def load_sd3(path: Path, sd: dict[str, torch.Tensor], device, dtype: torch.dtype, dtype_vae: Optional[torch.dtype],
             text_encoder_dirs: Optional[Sequence[Path]] = None,
             download: Callable[[], Optional[Path]] = hub_tokenizer) -> SD3:
    """A checkpoint file (already read into `sd`) plus the encoder files it lacks -> a ready SD3 model."""
    dirs = [Path(d) for d in (text_encoder_dirs if text_encoder_dirs is not None else text_encoder_dirs_for(path))]
    sd = dict(sd)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    mmdit = MMDiTConfig.from_shapes(shapes)
    in_file = sd3_detect.encoders_in(shapes)
    have = {name: None for name in in_file}
    for name, key in (("clip_l", CLIP_KEY), ("clip_g", "text_projection.weight")):
        if ENCODER_PREFIX[name] + key in shapes:
            have[name] = shapes[ENCODER_PREFIX[name] + key][1 if name == "clip_l" else 0]
    files, problems = scan(dirs) if set(in_file) != {"clip_l", "clip_g", "t5xxl"} else ([], [])
    chosen = choose_encoders(files, mmdit, have)
    missing = [name for name in ("clip_l", "clip_g") if name not in have and name not in chosen]
    if missing:
        raise ValueError(missing_encoder_message(missing, path.name, dirs, problems))
    tokenizer = find_t5_tokenizer(dirs, download) if "t5xxl" in in_file or "t5xxl" in chosen else None
    declared = trained_encoders(path)
    # a model trained without T5 (the CLIP-only demo) does not miss it
    notes = _t5_notes(in_file, chosen, tokenizer, dirs) if declared is None or "t5xxl" in declared else []
    if tokenizer is None:  # T5 would never run: do not hold its weights
        chosen.pop("t5xxl", None)
        sd = {k: v for k, v in sd.items() if not k.startswith(ENCODER_PREFIX["t5xxl"])}
    sources = Sources({"": path.name}, [MappedFile(path)])
    for name, entry in chosen.items():
        part = read_state_dict(entry.path)
        sources.mapped.append(MappedFile(entry.path))
        sources.names[name] = entry.path.name
        sd.update({ENCODER_PREFIX[name] + k[len(entry.prefix):]: v for k, v in part.items() if k.startswith(entry.prefix)})
        log.info("%s: %s from %s", path.name, sd3_detect.ENCODER_TITLES[name], entry.path)
    model = assemble(sd, device, dtype, dtype_vae, path.name, path.name, sources)
    if tokenizer is not None and hasattr(model.text_encoders, "t5xxl"):
        model.text_encoders.t5xxl.tokenizer = tokenizer
    model.notes = notes
    model.sources = sources.names
    return model


TRAINED_ENCODERS_KEY = "text_encoders"  # safetensors metadata: "clip_l,clip_g" for a model trained without T5


def trained_encoders(path: Path) -> Optional[set[str]]:
    """The text encoders a checkpoint says (in its metadata) it was trained with; None when it does not say."""
    if Path(path).suffix.lower() != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            value = (f.metadata() or {}).get(TRAINED_ENCODERS_KEY)
    except (SafetensorError, OSError):
        return None
    return {name.strip() for name in value.split(",") if name.strip()} if value else None


def _t5_notes(in_file, chosen, tokenizer, dirs) -> list[str]:
    where = dirs[0] if dirs else "models/text_encoder"
    if "t5xxl" not in in_file and "t5xxl" not in chosen:
        return [f"T5-XXL not found: prompts are encoded by CLIP-L/G only (the T5 part of the context is zero). "
                f"For better prompt following put {ENCODER_FILES['t5xxl']} (or t5xxl_fp8_e4m3fn.safetensors) "
                f"into {where}."]
    if tokenizer is None:
        return [f"T5-XXL found, but not its tokenizer: prompts are encoded by CLIP-L/G only (the T5 part of "
                f"the context is zero). To use T5, {T5_TOKENIZER_HELP} ({where})."]
    return []

