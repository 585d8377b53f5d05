"""A request's scripts -> the runner and A1111's positional `script_args` list.

Layout (A1111's ScriptRunner, which API clients rely on): args[0] is the 1-based index of the
dropdown script (0 = none), then each script's controls in the runner's order; a script's slice is
`script.args_from:script.args_to`. The API names scripts by title (`script_name` + its own
arguments, `alwayson_scripts: {title: {"args": [...]}}`); the web UI sends the whole list.
Without the extension system (no runner) any script name is refused as "not found", exactly what
A1111 answers for a script that is not installed (its messages and shape: no field named).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modules.errors import RequestError


@dataclass
class ScriptPlan:
    runner: Any = None  # the tab's ScriptRunner (None: no extension system)
    script_args: list = field(default_factory=list)


def title_of(script) -> str:
    try:
        return str(script.title())
    except Exception:  # noqa: BLE001 - a broken extension must not break the listing
        return getattr(script, "name", "") or type(script).__name__


def _find(scripts: list, name: str):
    wanted = name.strip().lower()
    return next((s for s in scripts if title_of(s).lower() == wanted), None)


def _default_args(runner) -> list:
    defaults = getattr(runner, "default_script_args", None)
    if callable(defaults):
        defaults = defaults()
    if defaults is not None:
        return list(defaults)
    ends = [getattr(s, "args_to", 0) or 0 for s in getattr(runner, "scripts", None) or []]
    return [None] * max([1, *ends])


def _fit(args: list, length: int) -> list:
    return args + [None] * (length - len(args)) if len(args) < length else args


def from_ui(runner, values: list) -> ScriptPlan:
    """The UI's [dropdown index or title, *controls] (a title is turned into its index)."""
    values = list(values)
    index = values[0] if values else 0
    if isinstance(index, str):
        titles = [title_of(s) for s in getattr(runner, "selectable_scripts", None) or []]
        index = titles.index(index) + 1 if index in titles else 0
    return ScriptPlan(runner, [int(index or 0), *values[1:]])


def from_api(runner, tab: str, script_name: str | None, script_args: list, alwayson_scripts: dict) -> ScriptPlan:
    """The API's names laid out as A1111 does; RequestError for an unknown script."""
    if runner is None:
        if script_name:
            raise RequestError(f"Script '{script_name}' not found: no {tab} scripts are installed")
        if alwayson_scripts:
            name = next(iter(alwayson_scripts))
            raise RequestError(f"always on script {name} not found: no {tab} scripts are installed")
        return ScriptPlan()
    args = _default_args(runner)
    if script_name:
        selectables = list(getattr(runner, "selectable_scripts", None) or [])
        selectable = _find(selectables, script_name)
        if selectable is None:
            known = ", ".join(title_of(s) for s in selectables) or "none"
            raise RequestError(f"Script '{script_name}' not found for {tab} (available: {known})")
        start, end = selectable.args_from, selectable.args_to
        args = _fit(args, end)
        args[start:end] = list(script_args)[: end - start] + args[start + len(script_args):end]
        args[0] = selectables.index(selectable) + 1
    for name, value in (alwayson_scripts or {}).items():
        script = _find(list(getattr(runner, "scripts", None) or []), name)
        if script is None:
            raise RequestError(f"always on script {name} not found")
        if not getattr(script, "alwayson", False):
            raise RequestError("Cannot have a selectable script in the always on scripts params")
        given = value.get("args", []) if isinstance(value, dict) else []
        if not isinstance(given, list):
            raise RequestError(f"alwayson_scripts.{name}.args must be a list", ("alwayson_scripts", name, "args"))
        start, end = script.args_from, script.args_to
        args = _fit(args, end)
        for i, v in enumerate(given[: end - start]):
            args[start + i] = v
    return ScriptPlan(runner, args)
