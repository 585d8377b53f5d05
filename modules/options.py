"""The settings registry: typed options with defaults, persisted in config.json.

Key names are A1111's where A1111 has the setting, so users' config.json, `override_settings` in API
calls and extensions' `opts.<key>` keep working. Each Options object carries its own copy of the
registry (extensions add options through `add_option` on the app's instance: no module globals).

Saving is atomic (temp file + rename). A config.json that cannot be parsed is moved aside to
`config.json.corrupt` and the defaults are used, with a warning: nothing the user set is lost.
"""
from __future__ import annotations

import contextlib
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from modules.atomic import atomic_write_text, read_json_object


class OptionError(ValueError):
    """An option name or value that cannot be used; the message says why."""


@dataclass(frozen=True)
class OptionInfo:
    default: Any
    label: str
    section: str
    kind: str = "auto"              # auto (from default) | text | int | float | bool | choice | list | folder
    choices: tuple | None = None    # fixed choices; None = free or filled at run time (e.g. models)
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    restart: bool = False           # takes effect after a restart / UI reload
    comment: str = ""

    def value_kind(self) -> str:
        if self.kind != "auto":
            return self.kind
        d = self.default
        return ("bool" if isinstance(d, bool) else "int" if isinstance(d, int) else
                "float" if isinstance(d, float) else "list" if isinstance(d, list) else "text")

    def validate(self, key: str, value: Any) -> Any:
        """Return the value converted to the option's type, or raise OptionError naming the problem."""
        kind = self.value_kind()
        try:
            value = _convert(kind, value)
        except (TypeError, ValueError, OverflowError):
            raise OptionError(f"setting {key!r} must be {KIND_NAMES.get(kind, kind)}, got {value!r}") from None
        if kind == "float" and not math.isfinite(value):
            raise OptionError(f"setting {key!r} must be a finite number, got {value!r}")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise OptionError(f"setting {key!r} must be between {self.minimum} and {self.maximum}, got {value!r}")
        if self.choices is not None:
            bad = [v for v in (value if kind == "list" else [value]) if v not in self.choices]
            if bad:
                raise OptionError(f"setting {key!r} must be one of {list(self.choices)}, got {bad[0]!r}")
        return value


def _convert(kind: str, value: Any) -> Any:
    """value as the option kind's type; TypeError/ValueError when it is not one."""
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError
    elif kind == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError
        value = int(value)
    elif kind == "float":
        if isinstance(value, bool):
            raise TypeError
        value = float(value)
    elif kind == "list":
        if not isinstance(value, (list, tuple)):
            raise TypeError
        value = list(value)
    elif kind in ("text", "choice", "folder"):
        if not isinstance(value, str) or not is_valid_text(value):
            raise TypeError
    return value


KIND_NAMES = {"int": "a whole number", "float": "a number", "bool": "true or false", "list": "a list",
              "text": "text", "choice": "one of the choices", "folder": "a folder path"}


def is_valid_text(text: str) -> bool:
    """False for text that cannot be written as UTF-8 (a lone surrogate such as '\\ud800' from a
    broken JSON client): it would fail later, in a file or an image's metadata."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _o(default, label, section, **kw) -> OptionInfo:
    return OptionInfo(default, label, section, **kw)


EMPHASIS = ("Original", "No norm", "Ignore", "None")
RNG_SOURCES = ("GPU", "CPU", "NV")
SAMPLES_FORMATS = ("png", "jpg", "jpeg", "webp")

REGISTRY: dict[str, OptionInfo] = {
    # Stable Diffusion
    "sd_model_checkpoint": _o("", "Stable Diffusion checkpoint", "sd", kind="text"),
    "sd_checkpoints_limit": _o(1, "Checkpoints kept in memory", "sd", minimum=1, maximum=10),
    "sd_vae": _o("Automatic", "SD VAE", "sd", kind="text",
                 comment="Automatic: a .vae file beside the checkpoint; None: the checkpoint's own"),
    "CLIP_stop_at_last_layers": _o(1, "Clip skip", "sd", minimum=1, maximum=12, step=1),
    "emphasis": _o("Original", "Emphasis mode", "sd", choices=EMPHASIS),
    "comma_padding_backtrack": _o(20, "Prompt word wrap length limit (pad to comma)", "sd", minimum=0, maximum=74),
    "sd_vae_tiled": _o(False, "Tiled VAE encode/decode (large images in bounded memory)", "sd"),
    "upcast_attn": _o(False, "Upcast cross attention layer to float32", "sd"),
    "img2img_fix_steps": _o(False, "img2img: do exactly the specified number of steps", "sd"),
    "initial_noise_multiplier": _o(1.0, "Noise multiplier for img2img", "sd", minimum=0.0, maximum=1.5),
    "inpainting_mask_weight": _o(1.0, "Inpainting conditioning mask strength", "sd", minimum=0.0, maximum=1.0),
    "disable_weights_auto_swap": _o(True, "When reading generation parameters from text (PNG Info, the API's "
                                    "infotext), do not change the checkpoint", "sd"),
    "quicksettings_list": _o(["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"], "Quicksettings list",
                             "ui", restart=True),
    # Sampler parameters
    "randn_source": _o("GPU", "Random number generator source", "sampler", choices=RNG_SOURCES),
    "eta_noise_seed_delta": _o(0, "Eta noise seed delta (ENSD)", "sampler", minimum=0),
    "eta_ancestral": _o(1.0, "Eta for k-diffusion ancestral samplers", "sampler", minimum=0.0, maximum=1.0),
    "eta_ddim": _o(0.0, "Eta for DDIM", "sampler", minimum=0.0, maximum=1.0),
    "s_churn": _o(0.0, "sigma churn", "sampler", minimum=0.0, maximum=100.0),
    "s_tmin": _o(0.0, "sigma tmin", "sampler", minimum=0.0, maximum=10.0),
    "s_tmax": _o(0.0, "sigma tmax (0 = infinity)", "sampler", minimum=0.0, maximum=999.0),
    "always_discard_next_to_last_sigma": _o(False, "Always discard next-to-last sigma", "sampler"),
    "rho": _o(0.0, "rho (Karras/Polyexponential schedules; 0 = default)", "sampler", minimum=0.0, maximum=10.0),
    "beta_dist_alpha": _o(0.6, "Beta schedule - alpha", "sampler", minimum=0.01, maximum=1.0),
    "beta_dist_beta": _o(0.6, "Beta schedule - beta", "sampler", minimum=0.01, maximum=1.0),
    "s_noise": _o(1.0, "sigma noise", "sampler", minimum=0.0, maximum=1.1),
    "uni_pc_variant": _o("bh1", "UniPC variant", "sampler", choices=("bh1", "bh2", "vary_coeff")),
    "uni_pc_skip_type": _o("time_uniform", "UniPC skip type", "sampler",
                           choices=("time_uniform", "time_quadratic", "logSNR")),
    "uni_pc_order": _o(3, "UniPC order (capped by the number of steps)", "sampler", minimum=1, maximum=50,
                       step=1),
    "uni_pc_lower_order_final": _o(True, "UniPC lower order final", "sampler"),
    # Optimizations (A1111's names)
    "s_min_uncond": _o(0.0, "Negative Guidance minimum sigma (skip the negative prompt on every other "
                       "step below this noise level)", "optimizations", minimum=0.0, maximum=15.0, step=0.01),
    "s_min_uncond_all": _o(False, "Negative Guidance minimum sigma all steps", "optimizations"),
    "skip_early_cond": _o(0.0, "Ignore negative prompt during early sampling (fraction of the steps)",
                          "optimizations", minimum=0.0, maximum=1.0, step=0.01),
    "token_merging_ratio": _o(0.0, "Token merging ratio", "optimizations", minimum=0.0, maximum=0.9, step=0.1),
    "token_merging_ratio_img2img": _o(0.0, "Token merging ratio for img2img (0 = the one above)",
                                      "optimizations", minimum=0.0, maximum=0.9, step=0.1),
    "token_merging_ratio_hr": _o(0.0, "Token merging ratio for the hires pass (0 = the one above)",
                                 "optimizations", minimum=0.0, maximum=0.9, step=0.1),
    # Saving images
    "samples_save": _o(True, "Always save all generated images", "saving"),
    "samples_format": _o("png", "File format for images", "saving", choices=SAMPLES_FORMATS),
    "samples_filename_pattern": _o("", "Images filename pattern", "saving", kind="text"),
    "grid_save": _o(True, "Always save all generated image grids", "saving"),
    "grid_format": _o("png", "File format for grids", "saving", choices=SAMPLES_FORMATS),
    "return_grid": _o(True, "Show grid in gallery", "saving"),
    "enable_pnginfo": _o(True, "Save text information about generation parameters", "saving"),
    "webp_lossless": _o(False, "Use lossless compression for webp images", "saving"),
    "n_rows": _o(-1, "Grid row count; -1 for autodetect and 0 for it to be same as batch size", "saving",
                 minimum=-1, maximum=16),
    "grid_prevent_empty_spots": _o(False, "Prevent empty spots in grid (when set to autodetect)", "saving"),
    "directories_max_prompt_words": _o(8, "Max prompt words for [prompt_words] pattern", "saving", minimum=1,
                                       maximum=20),
    "jpeg_quality": _o(80, "Quality for saved jpeg and webp images", "saving", minimum=1, maximum=100),
    "save_to_dirs": _o(True, "Save images to a subdirectory", "saving"),
    "directories_filename_pattern": _o("[date]", "Directory name pattern", "saving", kind="text"),
    "outdir_samples": _o("", "Output directory for images (overrides the ones below)", "paths", kind="folder"),
    "outdir_txt2img_samples": _o("outputs/txt2img-images", "Output directory for txt2img images", "paths",
                                 kind="folder"),
    "outdir_img2img_samples": _o("outputs/img2img-images", "Output directory for img2img images", "paths",
                                 kind="folder"),
    "outdir_extras_samples": _o("outputs/extras-images", "Output directory for images from extras", "paths",
                                kind="folder"),
    "outdir_txt2img_grids": _o("outputs/txt2img-grids", "Output directory for txt2img grids", "paths",
                               kind="folder"),
    "outdir_img2img_grids": _o("outputs/img2img-grids", "Output directory for img2img grids", "paths",
                               kind="folder"),
    # Live previews
    "live_previews_enable": _o(True, "Show live previews of the created image", "previews"),
    "show_progress_every_n_steps": _o(5, "Live preview display period (steps)", "previews", minimum=-1, maximum=32),
    "show_progress_type": _o("Approx cheap", "Live preview method", "previews", choices=("Approx cheap", "Full")),
    "live_preview_content": _o("Prompt", "Live preview subject", "previews", choices=("Combined", "Prompt", "Negative prompt")),
    # Limits and user interface
    "img_max_size": _o(4096, "Largest width/height accepted for uploads and generation", "ui", minimum=64, maximum=16384),
    "max_batch_count": _o(100, "Largest batch count", "ui", minimum=1, maximum=10000),
    "send_seed": _o(True, "Send seed when sending prompt or image to other interface", "ui"),
    "send_size": _o(True, "Send size when sending prompt or image to another interface", "ui"),
    "tiled_upscale_tile_size": _o(128, "SD x4: tile size (low-res pixels)", "upscaling", minimum=32, maximum=1024),
    "tiled_upscale_tile_overlap": _o(32, "SD x4: tile overlap (low-res pixels)", "upscaling", minimum=0, maximum=256),
    "x4_noise_level": _o(20, "SD x4: noise level", "upscaling", minimum=0, maximum=350),
    # model upscalers (models/ESRGAN ...): tile sides and overlaps in input pixels; 0 = no tiling
    "ESRGAN_tile": _o(192, "ESRGAN / Real-ESRGAN / HAT: tile size (0 = no tiling)", "upscaling", minimum=0, maximum=512),
    "ESRGAN_tile_overlap": _o(8, "ESRGAN / Real-ESRGAN / HAT: tile overlap", "upscaling", minimum=0, maximum=48),
    "SWIN_tile": _o(192, "SwinIR: tile size (0 = no tiling)", "upscaling", minimum=0, maximum=512),
    "SWIN_tile_overlap": _o(8, "SwinIR: tile overlap", "upscaling", minimum=0, maximum=48),
    "SCUNET_tile": _o(256, "ScuNET: tile size (0 = no tiling)", "upscaling", minimum=0, maximum=512),
    "SCUNET_tile_overlap": _o(8, "ScuNET: tile overlap", "upscaling", minimum=0, maximum=64),
    "DAT_tile": _o(192, "DAT: tile size (0 = no tiling)", "upscaling", minimum=0, maximum=512),
    "DAT_tile_overlap": _o(8, "DAT: tile overlap", "upscaling", minimum=0, maximum=48),
    "upscaler_for_img2img": _o("", "Upscaler for img2img (empty: Lanczos)", "upscaling", kind="text"),
    # face restoration (models/GFPGAN, models/Codeformer)
    "face_restoration": _o(False, "Restore faces", "face-restoration"),
    "face_restoration_model": _o("CodeFormer", "Face restoration model", "face-restoration",
                                 choices=("CodeFormer", "GFPGAN")),
    "code_former_weight": _o(0.5, "CodeFormer weight (0 = maximum effect, 1 = minimum effect)", "face-restoration",
                             minimum=0.0, maximum=1.0),
    "face_restoration_unload": _o(False, "Move face restoration model from VRAM into RAM after processing",
                                  "face-restoration"),
    # Extensions
    "disabled_extensions": _o([], "Disabled extensions", "extensions"),
    "disable_all_extensions": _o("none", "Disable all extensions", "extensions", choices=("none", "extra", "all")),
}


@dataclass
class Options:
    path: Path | None = None
    registry: dict[str, OptionInfo] = field(default_factory=lambda: dict(REGISTRY))
    data: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    section_labels: dict[str, str] = field(default_factory=dict)  # extensions' sections: id -> title
    listeners: dict[str, list] = field(default_factory=dict)  # key -> [fn(key, value)] after a change

    def __post_init__(self):
        self._lock = threading.RLock()

    # -- reading ---------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        with self._lock:
            if key in self.data:
                return self.data[key]
            if key in self.registry:
                default = self.registry[key].default
                return list(default) if isinstance(default, list) else default
        raise OptionError(f"unknown setting {key!r}")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key in ("path", "registry", "data", "warnings", "section_labels", "listeners"):
            raise AttributeError(key)
        try:
            return self.get(key)
        except OptionError:
            raise AttributeError(f"no setting named {key!r}") from None

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {**{k: self.get(k) for k in self.registry}, **self.data}

    # -- writing ---------------------------------------------------------------------------------
    def add_option(self, key: str, info: OptionInfo, section_label: str | None = None) -> None:
        """For extensions (on_ui_settings): adds a setting to this instance's registry; section_label
        is the Settings tab's title for a section of its own."""
        with self._lock:
            self.registry[key] = info
            if section_label:
                self.section_labels.setdefault(info.section, section_label)

    def on_change(self, key: str, fn) -> None:
        """fn(key, value) after set()/update() changed the value of key (A1111's opts.onchange)."""
        with self._lock:
            self.listeners.setdefault(key, []).append(fn)

    def _notify(self, changed: dict[str, Any]) -> None:
        for key, value in changed.items():
            for fn in list(self.listeners.get(key, ())):
                fn(key, value)

    def set(self, key: str, value: Any) -> Any:
        """Validate and set; returns the stored (converted) value. Does not save."""
        with self._lock:
            info = self.registry.get(key)
            if info is None:
                raise OptionError(f"unknown setting {key!r}")
            value = info.validate(key, value)
            changed = self.get(key) != value
            self.data[key] = value
        if changed:
            self._notify({key: value})
        return value

    def update(self, values: dict[str, Any]) -> None:
        """All-or-nothing: validate every value first, then set them."""
        with self._lock:
            checked = {}
            for key, value in values.items():
                info = self.registry.get(key)
                if info is None:
                    raise OptionError(f"unknown setting {key!r}")
                checked[key] = info.validate(key, value)
            changed = {k: v for k, v in checked.items() if self.get(k) != v}
            self.data.update(checked)
        self._notify(changed)

    @contextlib.contextmanager
    def override(self, values: dict[str, Any], restore: bool = True) -> Iterator[None]:
        """API `override_settings`: set for the duration of a job, then restore (unless told not to)."""
        with self._lock:
            before = {k: (k in self.data, self.data.get(k)) for k in values}
            self.update(values)
        try:
            yield
        finally:
            if restore:
                with self._lock:
                    during = {k: self.get(k) for k in before}
                    for k, (present, old) in before.items():
                        if present:
                            self.data[k] = old
                        else:
                            self.data.pop(k, None)
                    restored = {k: self.get(k) for k in before if self.get(k) != during[k]}
                self._notify(restored)

    # -- persistence -----------------------------------------------------------------------------
    def load(self) -> "Options":
        """Read config.json; unknown keys (extensions' settings) are kept as they are."""
        if self.path is None:
            return self
        raw, warning = read_json_object(self.path)
        if warning:
            self.warnings.append(f"{warning} and the default settings are used")
        for key, value in raw.items():
            info = self.registry.get(key)
            if info is None:
                self.data[key] = value
                continue
            try:
                self.data[key] = info.validate(key, value)
            except OptionError as e:
                self.warnings.append(f"{self.path.name}: {e}; using the default {info.default!r}")
        return self

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            text = json.dumps(self.data, indent=4, ensure_ascii=False, sort_keys=True)
        atomic_write_text(self.path, text + "\n")
