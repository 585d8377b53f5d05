"""A1111's `modules.paths` / `modules.paths_internal` names: the folders of the current application
(data dir, models, extensions, outputs) and of this checkout, as strings like A1111's."""
from __future__ import annotations

from modules.paths import ROOT
from modules.script_callbacks import current_scope

STATIC = {
    "script_path": str(ROOT), "cwd": str(ROOT), "modules_path": str(ROOT / "modules"),
    "sd_configs_path": str(ROOT / "configs"), "sd_default_config": str(ROOT / "configs" / "v1-inference.yaml"),
    "extensions_builtin_dir": str(ROOT / "extensions-builtin"),
}


def _app(name: str) -> str | None:
    paths = current_scope().ctx.paths
    return {
        "data_path": paths.data_dir, "models_path": paths.models_dir, "extensions_dir": paths.extensions_dir,
        "default_output_dir": paths.outputs_dir, "sd_model_file": paths.ckpt_dirs[0] / "model.ckpt",
        "default_sd_model_file": paths.ckpt_dirs[0] / "model.ckpt", "config_states_dir": paths.data_dir / "config_states",
    }.get(name)


def attribute(module: str, name: str) -> str:
    if name in STATIC:
        return STATIC[name]
    value = _app(name)
    if value is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r} in this web UI "
                             "(README: Extensions, A1111's module surface)")
    return str(value)
