"""A1111's `modules.shared`, as a thin facade for extensions. Nothing in the project uses it.

Every attribute is looked up, at the moment it is read, in the application of the extension scope
that is current (modules/script_callbacks.py): there is no global state here. The classes behind
`opts`, `state` and the checkpoint/upscaler lists are in modules/plugins/compat/.

Supported (A1111 v1.10 names): `opts` (settings: `opts.key`, `opts.key = value`, `opts.data`,
`opts.add_option(key, OptionInfo(...))`, `opts.onchange`, `opts.data_labels`...), `OptionInfo`,
`OptionHTML`, `options_section`, `state` (the running job: interrupted, skipped, job_count, job_no,
sampling_step, sampling_steps, textinfo, interrupt(), skip(), nextjob()...), `cmd_opts` (the parsed
flags, with A1111's defaults for flags this web UI does not have), `sd_model`, `device`,
`sd_upscalers`, `prompt_styles`, `list_checkpoint_tiles()`, `refresh_checkpoints()`, `total_tqdm`,
`walk_files`, `listfiles`, `natural_sort_key`, `hide_dirs`, `latent_upscale_modes`,
`latent_upscale_default_mode`, `face_restorers` (none), `hypernetworks` (none), `batch_cond_uncond`,
`data_path`, `models_path`, `script_path`, `models` (this web UI's ModelManager). Anything else of
A1111's shared.py raises AttributeError naming it (README: Extensions, A1111's module surface).
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any

from modules.plugins.compat import models as _models
from modules.plugins.compat.options import OptionHTML, OptionInfo, Opts, options_section  # noqa: F401
from modules.plugins.compat.state import State, TotalTQDM
from modules.script_callbacks import current_scope

opts = Opts()
state = State()
total_tqdm = TotalTQDM()
batch_cond_uncond = True       # cond and uncond always go through the UNet in one batch here
parallel_processing_allowed = True
xformers_available = False
face_restorers: list = []      # face restoration is not part of this web UI
progress_print_out = sys.stdout
latent_upscale_default_mode = "Latent"


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    return _models.checkpoint_tiles(use_short)


def refresh_checkpoints() -> None:
    _models.list_models()


def reload_hypernetworks() -> None:
    """Hypernetworks are not supported: nothing to reload."""


def natural_sort_key(s: str, regex=re.compile("([0-9]+)")) -> list:
    return [int(text) if text.isdigit() else text.lower() for text in regex.split(s)]


def listfiles(dirname: str) -> list[str]:
    """The files of a folder (not hidden), sorted naturally, as full paths."""
    names = [x for x in sorted(os.listdir(dirname), key=natural_sort_key) if not x.startswith(".")]
    return [os.path.join(dirname, x) for x in names if os.path.isfile(os.path.join(dirname, x))]


def walk_files(path: str, allowed_extensions=None):
    """Every file under path (following links), optionally only those with the given extensions."""
    if not os.path.exists(path):
        return
    allowed = set(allowed_extensions) if allowed_extensions is not None else None
    for root, _, files in os.walk(path, followlinks=True):
        for filename in sorted(files, key=natural_sort_key):
            if allowed is None or os.path.splitext(filename)[1].lower() in allowed:
                yield os.path.join(root, filename)


# A1111 flags this web UI does not have, with A1111's defaults (extensions read them from cmd_opts)
A1111_FLAG_DEFAULTS = {
    "xformers": False, "force_enable_xformers": False, "opt_sdp_attention": False, "opt_split_attention": False,
    "disable_opt_split_attention": False, "upcast_sampling": False, "no_half_controlnet": False, "share": False,
    "ngrok": None, "hide_ui_dir_config": False, "freeze_settings": False, "disable_console_progressbars": False,
    "disable_safe_unpickle": False, "theme": None, "hypernetwork_dir": None, "textual_inversion_templates_dir": None,
    "gfpgan_models_path": None, "codeformer_models_path": None, "esrgan_models_path": None, "realesrgan_models_path": None,
    "ui_settings_file": "config.json", "ui_config_file": "ui-config.json", "administrator": False, "cors_allow_origins": None,
    "tls_keyfile": None, "tls_certfile": None, "subpath": None, "no_gradio_queue": False, "skip_torch_cuda_test": False,
    "reinstall_xformers": False, "reinstall_torch": False, "update_check": False, "enable_console_prompts": False,
    "vae_path": None, "no_download_sd_model": True, "do_not_download_clip": True, "lyco_dir": None,
    "lyco_dir_backcompat": None, "lora_dir_backcompat": None, "sub_quad_q_chunk_size": 1024,
    "sub_quad_kv_chunk_size": None, "sub_quad_chunk_threshold": None, "always_batch_cond_uncond": True,
    "disable_nan_check": False, "api_log": False, "autolaunch": False, "loglevel": None, "log_startup": False,
    "ckpt_dirs": None, "unix_filenames_sanitization": False, "filenames_max_length": 128,
}


class CmdOpts:
    """shared.cmd_opts: the application's parsed flags; A1111 flags this web UI lacks read as
    A1111's defaults; lora_dir / embeddings_dir / vae_dir are the folders in use."""

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        ctx = current_scope().ctx
        folders = {"lora_dir": ctx.paths.lora_dir, "embeddings_dir": ctx.paths.embeddings_dir,
                   "vae_dir": ctx.paths.vae_dir, "data_dir": ctx.paths.data_dir}
        if key in folders:
            return str(folders[key])
        if hasattr(ctx.args, key):
            return getattr(ctx.args, key)
        if key in A1111_FLAG_DEFAULTS:
            return A1111_FLAG_DEFAULTS[key]
        raise AttributeError(f"shared.cmd_opts.{key}: no such flag in this web UI")

    def __setattr__(self, key: str, value: Any) -> None:
        setattr(current_scope().ctx.args, key, value)


cmd_opts = CmdOpts()


def _latent_upscale_modes() -> dict:
    from modules.processing import hires
    return {name: {} for name in hires.LATENT_UPSCALE_MODES}


def __getattr__(name: str) -> Any:
    ctx = current_scope().ctx
    values = {
        "sd_model": _models.current_sd_model,
        "models": lambda: ctx.models,
        "device": _models.device,
        "weight_load_location": lambda: None,
        "data_path": lambda: str(ctx.paths.data_dir),
        "models_path": lambda: str(ctx.paths.models_dir),
        "script_path": lambda: str(ctx.paths.extensions_builtin_dir.parent),
        "sd_upscalers": _models.sd_upscalers,
        "prompt_styles": lambda: ctx.services.styles,
        "hide_dirs": lambda: {"visible": True},
        "latent_upscale_modes": _latent_upscale_modes,
        "hypernetworks": dict,
        "loaded_hypernetworks": list,
        "demo": lambda: None,
    }
    if name in values:
        return values[name]()
    raise AttributeError(f"modules.shared.{name} is not available in this web UI (README: Extensions, "
                         "A1111's module surface)")
