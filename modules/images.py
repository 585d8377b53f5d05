"""Saving outputs as A1111 does, grids, upload size checks, and the cheap latent preview.

Files go to `<outdir>/<directory pattern, default [date]>/<NNNNN>-<file pattern, default [seed]>.<ext>`
with NNNNN the next number after the highest in that folder. A file is never overwritten: it is
written to a temp file and hard-linked into place (the link fails if the name was taken meanwhile,
and the next number is tried), so a reader never sees half an image.
"""
from __future__ import annotations

import datetime
import hashlib
import math
import os
import re
import string
import tempfile
from pathlib import Path

import torch
from PIL import Image, ImageColor

from modules.image_metadata import encode_image, read_info_from_image, storable_text  # noqa: F401 - re-exported
from modules.image_tiles import Grid, combine_grid, split_grid  # noqa: F401 - A1111's names (scripts use them)
from modules.processing.objects import ImageSaveParams

INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'
MAX_FILENAME_PART_LENGTH = 128
RE_NONLETTERS = re.compile(r"[\s" + re.escape(string.punctuation) + "]+")
RE_PATTERN = re.compile(r"(.*?)(?:\[([^\[\]]+)\]|$)")
RE_PATTERN_ARG = re.compile(r"(.*)<([^>]*)>$")


def sanitize_filename_part(text: str | None, replace_spaces: bool = True) -> str | None:
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    text = storable_text(text).translate({ord(c): "_" for c in INVALID_FILENAME_CHARS})
    return text.lstrip(" ")[:MAX_FILENAME_PART_LENGTH].rstrip(" .")


def _attr(obj, *names, default=None):
    for name in names:
        value = obj
        for part in name.split("."):
            value = getattr(value, part, None)
            if value is None:
                break
        if value is not None:
            return value
    return default


class FilenameGenerator:
    """Expands A1111's filename tokens ([seed], [prompt_spaces], [date], [datetime<%Y%m%d>], ...);
    unknown tokens stay as written. p: the processing object (read with getattr), may be None."""

    def __init__(self, p=None, seed=None, prompt: str | None = None, image: Image.Image | None = None,
                 max_prompt_words: int = 8, now: datetime.datetime | None = None):
        self.p, self.seed, self.prompt, self.image = p, seed, prompt, image
        self.max_prompt_words = max_prompt_words
        self.now = now or datetime.datetime.now()

    def _prompt_words(self):
        words = [w for w in RE_NONLETTERS.split(self.prompt or "") if w] or ["empty"]
        return sanitize_filename_part(" ".join(words[: self.max_prompt_words]), replace_spaces=False)

    def _datetime(self, fmt="%Y%m%d%H%M%S", *_):
        return self.now.strftime(fmt)

    def replacements(self) -> dict:
        p = self.p
        seeds = _attr(p, "all_seeds") or [self.seed]
        return {
            "seed": lambda: self.seed,
            "seed_first": lambda: seeds[0],
            "seed_last": lambda: seeds[-1],
            "steps": lambda: _attr(p, "steps"),
            "cfg": lambda: _attr(p, "cfg_scale"),
            "width": lambda: self.image.width if self.image else _attr(p, "width"),
            "height": lambda: self.image.height if self.image else _attr(p, "height"),
            "sampler": lambda: sanitize_filename_part(_attr(p, "sampler.name", "sampler_name"), False),
            "scheduler": lambda: _attr(p, "scheduler_info.label", "scheduler"),
            "model_hash": lambda: _attr(p, "env.model_hash"),
            "model_name": lambda: sanitize_filename_part(_attr(p, "env.model_name"), False),
            "date": lambda: self.now.strftime("%Y-%m-%d"),
            "datetime": self._datetime,
            "job_timestamp": lambda: _attr(p, "job_timestamp") or self._datetime(),
            "prompt": lambda: sanitize_filename_part(self.prompt),
            "prompt_spaces": lambda: sanitize_filename_part(self.prompt, replace_spaces=False),
            "prompt_words": self._prompt_words,
            "prompt_hash": lambda *a: hashlib.sha256((self.prompt or "").encode()).hexdigest()[: int(a[0]) if a else 8],
            "batch_number": lambda: _attr(p, "batch_index"),
            "generation_number": lambda: _attr(p, "iteration"),
            "denoising": lambda: _attr(p, "denoising_strength"),
            "user": lambda: _attr(p, "user"),
            "none": lambda: "",
        }

    def apply(self, pattern: str) -> str:
        table = self.replacements()
        out = ""
        for m in RE_PATTERN.finditer(pattern):
            text, token = m.groups()
            if token is None:
                out += text
                continue
            args = []
            while (arg := RE_PATTERN_ARG.match(token)) is not None:
                token, value = arg.groups()
                args.insert(0, value)
            fn = table.get(token.lower())
            value = fn(*args) if fn is not None else None
            out += text + (str(value) if value is not None else f"[{token}]")
        return out


def next_sequence_number(path: Path, basename: str = "") -> int:
    """One more than the highest leading number among the folder's files (A1111's counter)."""
    prefix = f"{basename}-" if basename else ""
    highest = -1
    if path.is_dir():
        for name in os.listdir(path):
            if name.startswith(prefix) and (path / name).is_file():
                first = os.path.splitext(name[len(prefix):])[0].split("-")[0]
                if first.isdigit():
                    highest = max(highest, int(first))
    return highest + 1


def write_new_file(path: Path, data: bytes) -> bool:
    """Atomically create `path` with `data`; False (and nothing written) if it already exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails if the name exists: never overwrite
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network/FAT file systems)
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _inside(folder: Path, path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise ValueError(f"the file name pattern leads outside the output folder {folder}: {path}")
    return path


def output_dir(opts, key: str, data_dir=None, explicit=None) -> Path:
    """Where outputs of setting `key` (e.g. "outdir_txt2img_samples") go: `explicit` if given, else the
    outdir_samples override for sample folders, else the setting; relative paths are under data_dir."""
    if explicit:
        path = Path(explicit)
    elif key.endswith("_samples") and opts.outdir_samples:
        path = Path(opts.outdir_samples)
    else:
        path = Path(getattr(opts, key))
    if not path.is_absolute() and data_dir is not None:
        path = Path(data_dir) / path
    return path


def save_image(image: Image.Image, path, basename: str = "", seed=None, prompt: str | None = None,
               extension: str | None = None, info: str | None = None, short_filename: bool = False,
               no_prompt: bool = False, grid: bool = False, pnginfo_section_name: str = "parameters", p=None,
               existing_info: dict | None = None, forced_filename: str | None = None, suffix: str = "",
               save_to_dirs: bool | None = None, *, opts=None, callbacks=None) -> tuple[str, None]:
    """Save like A1111's images.save_image (same argument order); returns (file path, None).

    Settings read from opts (default: p's): samples_format / grid_format, samples_filename_pattern,
    save_to_dirs, directories_filename_pattern, enable_pnginfo, jpeg_quality, webp_lossless,
    directories_max_prompt_words. callbacks (default: p's) get an ImageSaveParams whose `filename` is
    the target path: an on_before_image_saved callback may change it (another folder, name or
    format, as in A1111); a changed name that exists already is refused, never overwritten."""
    env = getattr(p, "env", None) if p is not None else None
    if opts is None and env is not None:
        opts = env.opts
    if callbacks is None and env is not None:
        callbacks = env.callbacks
    o = lambda name, default: getattr(opts, name, default) if opts is not None else default  # noqa: E731
    if path is None and env is not None:  # extensions pass p.outpath_samples, which a job leaves unset
        kind = "grids" if grid else "samples"
        path = output_dir(opts, f"outdir_{'img2img' if getattr(p, 'is_img2img', False) else 'txt2img'}_{kind}",
                          env.data_dir)
    if grid and not basename:
        basename, short_filename = "grid", True
    extension = (extension or o("grid_format" if grid else "samples_format", "png")).lower().lstrip(".")
    folder = Path(path)
    namegen = FilenameGenerator(p, seed, prompt, image, max_prompt_words=o("directories_max_prompt_words", 8))
    if save_to_dirs is None:
        save_to_dirs = o("save_to_dirs", True)
    if save_to_dirs:
        dirname = namegen.apply(o("directories_filename_pattern", "") or "[date]").strip(" \\/")
        folder = _inside(Path(path), folder / dirname)
    folder.mkdir(parents=True, exist_ok=True)

    pnginfo = dict(existing_info or {})
    if info and o("enable_pnginfo", True):
        pnginfo[pnginfo_section_name] = info
    if forced_filename is not None:
        candidates = iter([_inside(folder, folder / f"{sanitize_filename_part(forced_filename, False)}.{extension}")])
    else:
        candidates = _numbered_names(folder, basename, _decoration(namegen, o, seed, short_filename or no_prompt,
                                                                    save_to_dirs, suffix), extension)
    target = next(candidates, None)
    if target is None:
        raise FileExistsError(f"no free file name in {folder}")
    params = None
    if callbacks is not None and (callbacks.on_before_image_saved or callbacks.on_image_saved):

        params = ImageSaveParams(image, p, str(target), pnginfo)
        for callback in callbacks.on_before_image_saved:
            callback(params)
        image, pnginfo = params.image, params.pnginfo
        if Path(params.filename) != target:  # a callback chose the file: its name and format
            target = Path(params.filename) if Path(params.filename).is_absolute() else folder / params.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            extension = target.suffix.lstrip(".").lower() or extension
            candidates = iter(())
    data = encode_image(image, extension, pnginfo.get(pnginfo_section_name), pnginfo,
                        quality=o("jpeg_quality", 80), lossless=o("webp_lossless", False))
    target = _write_first_free(target, candidates, data, forced_filename is not None or params is not None)
    if params is not None:
        params.filename = str(target)
        for callback in callbacks.on_image_saved:
            callback(params)
    return str(target), None


def _decoration(namegen: FilenameGenerator, o, seed, short: bool, save_to_dirs: bool, suffix: str) -> str:
    """The part of a file name after its number: the samples_filename_pattern, sanitised."""
    if short or seed is None:
        decoration = ""
    else:
        default = "[seed]" if save_to_dirs else "[seed]-[prompt_spaces]"
        decoration = namegen.apply(o("samples_filename_pattern", "") or default)
    decoration = sanitize_filename_part(decoration + suffix, replace_spaces=False)
    return f"-{decoration}" if decoration else ""


def _numbered_names(folder: Path, basename: str, decoration: str, extension: str):
    """NNNNN-decoration.ext (or basename-NNNN-...) names from the next free number on."""
    number = next_sequence_number(folder, basename)
    for attempt in range(1000):
        stem = f"{number + attempt:05}" if not basename else f"{basename}-{number + attempt:04}"
        target = folder / f"{stem}{decoration}.{extension}"
        if not target.exists():
            yield target


def _write_first_free(target: Path, others, data: bytes, exact: bool) -> Path:
    """Write to target, or (another writer took it meanwhile) to the next free numbered name."""
    while True:
        if write_new_file(target, data):
            return target
        if exact:
            raise FileExistsError(f"{target} exists already: outputs are never overwritten")
        target = next(others, None)
        if target is None:
            raise FileExistsError("no free file name in the output folder")


def image_grid(imgs: list[Image.Image], batch_size: int = 1, rows: int | None = None, n_rows: int = -1,
               prevent_empty_spots: bool = False, background: str = "#ffffff") -> Image.Image:
    """Images in a grid. rows: explicit; else n_rows > 0 (setting), n_rows == 0 (one row per batch),
    or automatic (A1111: round(sqrt(n)), or the largest divisor <= sqrt(n) to avoid empty spots)."""
    if not imgs:
        raise ValueError("image_grid needs at least one image")
    if rows is None:
        if n_rows > 0:
            rows = n_rows
        elif n_rows == 0:
            rows = batch_size
        elif prevent_empty_spots:
            rows = math.floor(math.sqrt(len(imgs)))
            while len(imgs) % rows != 0:
                rows -= 1
        else:
            rows = round(math.sqrt(len(imgs)))
    rows = max(1, min(rows, len(imgs)))
    cols = math.ceil(len(imgs) / rows)
    w, h = map(max, zip(*(img.size for img in imgs), strict=True))
    grid = Image.new("RGB", (cols * w, rows * h), ImageColor.getcolor(background, "RGB"))
    for i, img in enumerate(imgs):
        dx, dy = (w - img.width) // 2, (h - img.height) // 2  # smaller images are centred in their cell
        grid.paste(img, (i % cols * w + dx, i // cols * h + dy))
    return grid


def check_image_size(width: int, height: int, max_side: int, max_pixels: int | None = None) -> None:
    """Refuse images larger than the img_max_size setting (uploads and requested sizes)."""
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height} is empty")
    if width > max_side or height > max_side:
        raise ValueError(f"image is {width}x{height}, larger than the limit of {max_side} pixels per side "
                         "(setting img_max_size): make it smaller")
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(f"image is {width}x{height} = {width * height} pixels, more than the limit of "
                         f"{max_pixels}: make it smaller")


# SD v1/v2 latent (already multiplied by the scale factor) -> RGB in [-1, 1]: a linear fit of the
# VAE decoder per latent channel, widely used for previews (A1111 "Approx cheap", InvokeAI, ComfyUI).
LATENT_RGB_FACTORS = torch.tensor([
    #  R       G       B
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
])


def approx_latent_to_rgb(latent: torch.Tensor) -> torch.Tensor:
    """(B, 4, h, w) latents -> (B, 3, h, w) in [0, 1] at latent resolution."""
    if latent.ndim != 4 or latent.shape[1] != LATENT_RGB_FACTORS.shape[0]:
        raise ValueError(f"approx preview needs (B, 4, h, w) SD latents, got {tuple(latent.shape)}")
    rgb = torch.einsum("blhw,lr->brhw", latent.float().cpu(), LATENT_RGB_FACTORS)
    return ((rgb + 1) / 2).clamp(0, 1)


def approx_latent_preview(latent: torch.Tensor, sd_model=None) -> Image.Image:
    """A cheap preview image of a batch of latents (a grid when there are several)."""
    rgb = approx_latent_to_rgb(latent)
    pixels = (rgb * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    imgs = [Image.fromarray(p) for p in pixels]
    return imgs[0] if len(imgs) == 1 else image_grid(imgs)


def get_next_sequence_number(path, basename: str = "") -> int:
    """A1111's name for next_sequence_number."""
    return next_sequence_number(Path(path), basename)


def __getattr__(name: str):
    """A1111's names for extensions (resize_image, flatten...): modules/plugins/compat/images.py."""
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.plugins.compat import images as a1111
    return a1111.attribute(name)
