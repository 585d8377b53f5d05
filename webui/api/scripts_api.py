"""GET /scripts and /script-info: the extensions' scripts as A1111 lists them.

A request's `script_name` / `script_args` / `alwayson_scripts` are laid out and checked by the engine
(modules.generation.scripts); this module only lists what `ctx.services.scripts` holds.
"""
from __future__ import annotations

from modules.context import AppContext
from modules.generation.scripts import title_of


def runner_for(ctx: AppContext, is_img2img: bool):
    service = ctx.services.scripts
    return service.runner(is_img2img) if service is not None else None


def scripts_list(ctx: AppContext) -> dict[str, list[str]]:
    out = {}
    for key, is_img2img in (("txt2img", False), ("img2img", True)):
        runner = runner_for(ctx, is_img2img)
        out[key] = [title_of(s).lower() for s in getattr(runner, "selectable_scripts", None) or []]
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
                info = {"name": title_of(script).lower(), "is_alwayson": bool(getattr(script, "alwayson", False)),
                        "is_img2img": is_img2img, "args": []}
            elif not isinstance(info, dict):
                info = {k: getattr(info, k, None) for k in ("name", "is_alwayson", "is_img2img", "args")}
                info["args"] = [a if isinstance(a, dict) else vars(a) for a in info["args"] or []]
            out.append(info)
    return out
