"""The script runner of one tab (txt2img or img2img): A1111's ScriptRunner, without Gradio.

Argument layout (A1111's, which API clients rely on): `p.script_args[0]` is the 1-based index of the
dropdown script (0 = none), then each script's control values in `self.scripts` order (AlwaysVisible
scripts first, then the dropdown ones); `script.args_from:script.args_to` is a script's slice.

The front end builds the controls (webui/ui/scripts_ui.py calls `ui()` inside its Blocks and hands
them to `set_controls`); for the API without a built UI, `describe()` builds them once inside
`ui_sandbox()` (a context manager the front end injects) to learn the defaults.

The runner is the `p.scripts` object process_images calls (processing.objects.ScriptHooks): every hook
calls the AlwaysVisible scripts' hooks, each isolated through the callback registry.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable

from modules.devices import OutOfMemory
from modules.models import patcher
from modules.script_callbacks import CallbackRegistry, extension_scope
from modules.scripts import AlwaysVisible, Script, ScriptClass

log = logging.getLogger("sdwebui.extensions")


class ScriptError(ValueError):
    """A dropdown script's run() failed; the message names the script and its extension."""


def _title(script: Script) -> str:
    try:
        return str(script.title())
    except Exception:  # noqa: BLE001 - a broken title() must not break listings
        return type(script).__name__


def normalize_controls(controls) -> tuple[list, list[str] | None]:
    """ui()'s return value -> (components, names or None for positional delivery)."""
    if controls is None:
        return [], None
    if isinstance(controls, dict):
        return list(controls.values()), [str(k) for k in controls]
    if isinstance(controls, (list, tuple)):
        return list(controls), None
    return [controls], None


def _arg_info(component) -> dict:
    info = {"label": getattr(component, "label", None), "value": getattr(component, "value", None)}
    for key in ("minimum", "maximum", "step"):
        info[key] = getattr(component, key, None)
    choices = getattr(component, "choices", None)
    if choices:
        info["choices"] = [c[1] if isinstance(c, (list, tuple)) and len(c) == 2 else c for c in choices]
    return info


class ScriptRunner:
    """Scripts of one tab. Script instances are created here (one per tab, as A1111 does)."""

    def __init__(self, classes: list[ScriptClass], is_img2img: bool, registry: CallbackRegistry):
        self.is_img2img = is_img2img
        self.registry = registry
        self.alwayson_scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self._scopes: dict[int, Any] = {}
        self._names: dict[int, list[str] | None] = {}
        self._defaults: list = [0]
        self._ui_failed: set[int] = set()
        self._described = False
        self._lock = threading.RLock()
        self.ui_sandbox: Callable[[], Any] | None = None
        for sc in classes:
            self._add(sc)

    @property
    def scripts(self) -> list[Script]:
        return self.alwayson_scripts + self.selectable_scripts

    def _add(self, sc: ScriptClass) -> None:
        where = f"{sc.file.name} ({sc.script_class.__name__})"
        ok, script = self.registry.guarded(sc.scope, where, sc.script_class)
        if not ok:
            return
        script.filename, script.extension = sc.path, sc.extension
        script.is_txt2img, script.is_img2img = not self.is_img2img, self.is_img2img
        ok, visibility = self.registry.guarded(sc.scope, f"{where} show()", script.show, self.is_img2img)
        if not ok or not visibility:
            return
        self._scopes[id(script)] = sc.scope
        if visibility is AlwaysVisible:
            script.alwayson = True
            self.alwayson_scripts.append(script)
        else:
            self.selectable_scripts.append(script)

    def scope_of(self, script: Script):
        return self._scopes[id(script)]

    def titles(self) -> list[str]:
        return [_title(s) for s in self.selectable_scripts]

    # -- controls -------------------------------------------------------------------------------
    def build_ui(self, script: Script) -> list:
        """Call script.ui() (inside the caller's UI context and the front end's ui_context for the
        extension); the components, [] if it failed (then ui_failed(script) is True)."""
        where = f"{_title(script)} ui()"
        ok, controls = self.registry.guarded_ui(self.scope_of(script), where, script.ui, self.is_img2img)
        components, names = normalize_controls(controls if ok else None)
        script.controls = controls if ok else None
        self._names[id(script)] = names
        (self._ui_failed.discard if ok else self._ui_failed.add)(id(script))
        return components

    def ui_failed(self, script: Script) -> bool:
        return id(script) in self._ui_failed

    def component_hooks(self, component, kwargs: dict, phase: str) -> None:
        """Script.before_component/after_component and on_*_component(elem_id=...) of this tab's
        scripts for one component of the page (phase "before" or "after")."""
        from modules.scripts import OnComponent
        elem_id = kwargs.get("elem_id")
        for script in self.scripts:
            scope = self.scope_of(script)
            method = getattr(script, f"{phase}_component")
            self.registry.guarded_ui(scope, f"{_title(script)} {phase}_component()", method, component, **kwargs)
            for wanted, callback in getattr(script, f"on_{phase}_component_elem_id", None) or []:
                if wanted == elem_id:
                    self.registry.guarded_ui(scope, f"{_title(script)} on_{phase}_component({elem_id})",
                                             callback, OnComponent(component))

    def set_layout(self, components_by_script: dict[int, list]) -> None:
        """Assign args_from/args_to in `self.scripts` order from the built components; defaults and
        api_info come from the components' values."""
        with self._lock:
            defaults: list = [0]
            for script in self.scripts:
                components = components_by_script.get(id(script), [])
                script.args_from, script.args_to = len(defaults), len(defaults) + len(components)
                defaults += [getattr(c, "value", None) for c in components]
                script.api_info = {"name": _title(script).lower(), "is_alwayson": script.alwayson,
                                   "is_img2img": self.is_img2img, "args": [_arg_info(c) for c in components]}
            self._defaults = defaults
            self._described = True

    def describe(self) -> None:
        """Build every script's controls once outside the page (for API defaults and /script-info)."""
        with self._lock:
            if self._described:
                return
            sandbox = self.ui_sandbox() if self.ui_sandbox is not None else contextlib.nullcontext()
            built = {}
            with sandbox:
                for script in self.scripts:
                    built[id(script)] = self.build_ui(script)
            self.set_layout(built)

    def default_script_args(self) -> list:
        self.describe()
        return list(self._defaults)

    def _script_args(self, script: Script, script_args) -> tuple[list, dict]:
        args = list(script_args or [])
        start, end = script.args_from or 0, script.args_to or 0
        given = args[start:end]
        if len(given) < end - start:  # missing trailing values: the defaults
            given += self._defaults[start + len(given):end] if len(self._defaults) >= end else \
                [None] * (end - start - len(given))
        names = self._names.get(id(script))
        if names:
            return [], dict(zip(names, given, strict=False))
        return given, {}

    # -- running --------------------------------------------------------------------------------
    def run_from_ui(self, p, values: list):
        """The UI's Generate: values = [dropdown index, *controls]. Sets p.scripts / p.script_args
        (AlwaysVisible scripts get theirs); returns the dropdown script's Processed or None."""
        values = list(values)
        index = values[0] if values else 0
        if isinstance(index, str):  # a title instead of an index
            titles = self.titles()
            index = titles.index(index) + 1 if index in titles else 0
        values = [int(index or 0), *values[1:]]
        return self.run(p, *values)

    def run(self, p, *args):
        """A1111's ScriptRunner.run: args[0] picks the dropdown script (1-based; 0 = none)."""
        self.describe()
        patcher.remove_stale(self)  # a previous job that failed may have left patches on
        p.scripts, p.script_args = self, list(args)
        self.setup(p)
        index = int(args[0]) if args and args[0] else 0
        if index == 0 or index > len(self.selectable_scripts):
            return None
        script = self.selectable_scripts[index - 1]
        positional, named = self._script_args(script, args)
        with self._in_scope(script):
            try:
                return script.run(p, *positional, **named)
            except ValueError:
                raise
            except Exception as e:
                if isinstance(e, OutOfMemory):
                    raise
                self.registry.report(script.extension, f"{_title(script)} run()", e)
                raise ScriptError(f"script '{_title(script)}' (extension {script.extension}) failed: "
                                  f"{type(e).__name__}: {e}") from e

    @contextlib.contextmanager
    def _in_scope(self, script: Script):
        with extension_scope(self.scope_of(script)):
            yield

    def _each(self, p, hook: str, *lead, **kwargs) -> None:
        for script in self.alwayson_scripts:
            fn = getattr(script, hook, None)
            if fn is None:
                continue
            positional, named = self._script_args(script, getattr(p, "script_args", None))
            self.registry.guarded(self.scope_of(script), f"{_title(script)} {hook}()", fn, p, *lead,
                                  *positional, **named, **kwargs)

    # -- the hook points process_images calls (processing.objects.ScriptHooks) ----------------------
    def setup(self, p) -> None:
        if not getattr(p, "_scripts_set_up", False):
            p._scripts_set_up = True
            self._each(p, "setup")

    def before_process(self, p) -> None:
        self.setup(p)
        self._each(p, "before_process")

    def process(self, p) -> None:
        self._each(p, "process")

    def before_process_batch(self, p, **kwargs) -> None:
        self._each(p, "before_process_batch", **kwargs)

    def process_batch(self, p, **kwargs) -> None:
        self._each(p, "process_batch", **kwargs)

    def postprocess_batch(self, p, images, **kwargs) -> None:
        self._each(p, "postprocess_batch", images=images, **kwargs)

    def postprocess_image(self, p, pp) -> None:
        self._each(p, "postprocess_image", pp)

    def postprocess(self, p, processed) -> None:
        self._each(p, "postprocess", processed)
        self.close(p)

    def close(self, p) -> None:
        """Take off every model patch scripts applied for this job (patcher.apply_for_job)."""
        patcher.remove_for_job(p, self)
