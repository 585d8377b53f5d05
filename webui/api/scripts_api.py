"""`script_name` / `script_args` / `alwayson_scripts` of API requests, and GET /scripts, /script-info.

The seam: the extensions system registers `ctx.services["scripts"]`, an object with A1111's two
ScriptRunners as `scripts_txt2img` and `scripts_img2img` (or a method `runner(is_img2img)`). A runner
has `scripts` (every Script), `selectable_scripts`, optionally `alwayson_scripts`, `run(p, *args)`
(runs the selectable script whose 1-based index is args[0]; for 0 it returns None and the API then
runs process_images with `p.scripts` set for the AlwaysVisible hooks) and optionally `default_script_args()`
(or the list `default_script_args`). A Script has `title()`, `alwayson`, `args_from`, `args_to` and
optionally `api_info`. Without the service there are no scripts: any script name is a 422
"not found", exactly what A1111 answers for a script that is not installed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modules.context import AppContext
from webui.api.errors import ApiError


def runner_for(ctx: AppContext, is_img2img: bool):
    service = ctx.services.get("scripts")
    if service is None:
        return None
    if hasattr(service, "runner"):
        return service.runner(is_img2img)
    return getattr(service, "scripts_img2img" if is_img2img else "scripts_txt2img", None)


def _title(script) -> str:
    try:
        return str(script.title())
    except Exception:  # noqa: BLE001 - a broken extension must not break the listing
        return getattr(script, "name", "") or type(script).__name__


def scripts_list(ctx: AppContext) -> dict[str, list[str]]:
    out = {}
    for key, is_img2img in (("txt2img", False), ("img2img", True)):
        runner = runner_for(ctx, is_img2img)
        out[key] = [_title(s).lower() for s in getattr(runner, "selectable_scripts", None) or []]
    return out


def script_info(ctx: AppContext) -> list[dict]:
    out = []
    for is_img2img in (False, True):
        runner = runner_for(ctx, is_img2img)
        if hasattr(runner, "describe"):
            runner.describe()  # builds the controls once: api_info and defaults come from them
        for script in getattr(runner, "scripts", None) or []:
            info = getattr(script, "api_info", None)
            if info is None:
                info = {"name": _title(script).lower(), "is_alwayson": bool(getattr(script, "alwayson", False)),
                        "is_img2img": is_img2img, "args": []}
            elif not isinstance(info, dict):
                info = {k: getattr(info, k, None) for k in ("name", "is_alwayson", "is_img2img", "args")}
                info["args"] = [a if isinstance(a, dict) else vars(a) for a in info["args"] or []]
            out.append(info)
    return out


def _find(scripts: list, name: str):
    wanted = name.strip().lower()
    return next((s for s in scripts if _title(s).lower() == wanted), None)


def _default_args(runner) -> list:
    defaults = getattr(runner, "default_script_args", None)
    if callable(defaults):
        defaults = defaults()
    if defaults is not None:
        return list(defaults)
    ends = [getattr(s, "args_to", 0) or 0 for s in getattr(runner, "scripts", None) or []]
    return [None] * max([1, *ends])


@dataclass
class ScriptPlan:
    """What a request asked of scripts: the runner (None = no extension system), the selectable
    script to run (None = plain process_images) and the full positional argument list."""
    runner: Any = None
    selectable: Any = None
    script_args: list = field(default_factory=list)


def plan(ctx: AppContext, is_img2img: bool, script_name: str | None, script_args: list,
         alwayson_scripts: dict) -> ScriptPlan:
    """Check the names and lay the arguments out as A1111 does; 422 for an unknown script."""
    runner = runner_for(ctx, is_img2img)
    tab = "img2img" if is_img2img else "txt2img"
    if runner is None:
        if script_name:
            raise ApiError(422, f"Script '{script_name}' not found: no {tab} scripts are installed")
        if alwayson_scripts:
            name = next(iter(alwayson_scripts))
            raise ApiError(422, f"always on script {name} not found: no {tab} scripts are installed")
        return ScriptPlan()
    args = _default_args(runner)
    selectable = None
    if script_name:
        selectables = list(getattr(runner, "selectable_scripts", None) or [])
        selectable = _find(selectables, script_name)
        if selectable is None:
            known = ", ".join(_title(s) for s in selectables) or "none"
            raise ApiError(422, f"Script '{script_name}' not found for {tab} (available: {known})")
        start, end = selectable.args_from, selectable.args_to
        args = _fit(args, end)
        args[start:end] = list(script_args)[: end - start] + args[start + len(script_args):end]
        args[0] = selectables.index(selectable) + 1
    for name, value in (alwayson_scripts or {}).items():
        script = _find(list(getattr(runner, "scripts", None) or []), name)
        if script is None:
            raise ApiError(422, f"always on script {name} not found")
        if not getattr(script, "alwayson", False):
            raise ApiError(422, "Cannot have a selectable script in the always on scripts params")
        given = value.get("args", []) if isinstance(value, dict) else []
        if not isinstance(given, list):
            raise ApiError(422, f"alwayson_scripts.{name}.args must be a list")
        start, end = script.args_from, script.args_to
        args = _fit(args, end)
        for i, v in enumerate(given[: end - start]):
            args[start + i] = v
    return ScriptPlan(runner=runner, selectable=selectable, script_args=args)


def _fit(args: list, length: int) -> list:
    return args + [None] * (length - len(args)) if len(args) < length else args
