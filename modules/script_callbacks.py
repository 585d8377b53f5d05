"""A1111's `modules.script_callbacks`: extensions register functions that the web UI calls at named
points (app started, model loaded, UI tabs and settings, image saving, the CFG denoiser...).

Extensions call the module-level functions, as they do in A1111:

    from modules import script_callbacks
    script_callbacks.on_ui_tabs(make_tab)

There is no module of mutable globals behind them: each function registers into the registry of the
*extension scope* that is current - a `contextvars.ContextVar` that the extension loader sets while
it imports an extension's scripts, and that the script runner and this registry set again whenever
they call into an extension (ui(), process(), a callback...). So a registration always lands in the
right application's registry, under the right extension name. Code that runs outside such a call
(e.g. a Gradio event handler an extension made) sees the scope that `CallbackRegistry.activate` left
in the start-up thread's context, which the server's threads and tasks inherit.

Every callback is isolated: an exception is logged once (with the extension's name and a
traceback), recorded in `registry.problems` for the Extensions tab, and the job goes on.

Extension code that imports UI libraries or builds UI (script imports, ui(), on_ui_tabs,
on_before_ui, the component callbacks) runs inside `registry.ui_context(scope)`, the context the
front end injects (`ui_environment`; the web UI's gives Gradio 3 code its stand-in module, see
webui/ui/gradio3_compat.py). Callbacks are remembered with the file that registered them, so
`remove_current_script_callbacks()` forgets one script's, as in A1111.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from modules.processing.objects import ImageSaveParams, ProcessingCallbacks  # noqa: F401
from modules.sampling.cfg_denoiser import AfterCFGCallbackParams, CFGDenoisedParams, CFGDenoiserParams  # noqa: F401

log = logging.getLogger("sdwebui.extensions")

# the callback kinds this web UI calls (A1111's names without "on_")
KINDS = ("app_started", "model_loaded", "ui_tabs", "ui_settings", "before_image_saved", "image_saved",
         "cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "infotext_pasted", "script_unloaded", "before_ui",
         "before_component", "after_component")
# A1111 names an extension may register that this web UI never calls (recorded as a note, no error)
NOT_CALLED = ("ui_train_tabs", "list_optimizers", "list_unets", "image_grid", "extra_noise", "before_reload",
              "before_token_counter")

_PROCESSING_LISTS = {
    "cfg_denoiser": lambda pc: pc.cfg.on_cfg_denoiser,
    "cfg_denoised": lambda pc: pc.cfg.on_cfg_denoised,
    "cfg_after_cfg": lambda pc: pc.cfg.on_cfg_after_cfg,
    "before_image_saved": lambda pc: pc.on_before_image_saved,
    "image_saved": lambda pc: pc.on_image_saved,
}


@dataclass
class Problem:
    """Something an extension did wrong, for the log and the Extensions tab."""

    extension: str
    where: str        # "scripts/foo.py", "callback on_ui_tabs (make_tab)", "install.py" ...
    message: str      # one line: "ZeroDivisionError: division by zero"
    details: str = ""  # traceback or output tail


@dataclass
class ExtensionScope:
    """Which extension is being loaded or called, and the registry its registrations go to."""

    registry: "CallbackRegistry"
    extension: str
    path: Path | None = None
    front_end: dict = field(default_factory=dict, repr=False)  # what the front end keeps per extension

    @property
    def ctx(self):
        return self.registry.ctx


@dataclass
class Callback:
    kind: str
    fn: Callable
    scope: ExtensionScope
    name: str = ""
    filename: str = ""  # the file that registered it (remove_current_script_callbacks)

    @property
    def callback(self) -> Callable:  # A1111's ScriptCallback field names
        return self.fn

    @property
    def script(self) -> str:
        return self.filename


# A1111's parameter objects of the callbacks this web UI accepts but never calls, so that extensions
# importing them load (their fields are A1111's)
@dataclass
class ExtraNoiseParams:
    noise: Any
    x: Any
    xi: Any


@dataclass
class ImageGridLoopParams:
    imgs: list
    cols: int
    rows: int


@dataclass
class BeforeTokenCounterParams:
    prompt: str
    steps: int
    styles: list
    is_positive: bool = True


@dataclass
class UiTrainTabParams:
    txt2img_preview_params: list


_scope: ContextVar[ExtensionScope | None] = ContextVar("sdwebui_extension_scope", default=None)


@contextlib.contextmanager
def extension_scope(scope: ExtensionScope) -> Iterator[ExtensionScope]:
    """Make `scope` current for the code inside (registrations, modules.shared, scripts.basedir())."""
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> ExtensionScope:
    scope = _scope.get()
    if scope is None:
        raise RuntimeError("no extension is being loaded or called right now: script_callbacks and "
                           "modules.shared work inside an extension's scripts (at import, in Script "
                           "methods and in callbacks)")
    return scope


class CallbackRegistry:
    """The callbacks of one application (one AppContext), in registration order."""

    def __init__(self, ctx: Any = None):
        self.ctx = ctx
        self.callbacks: dict[str, list[Callback]] = {k: [] for k in KINDS}
        self.problems: list[Problem] = []
        self.notes: dict[str, list[str]] = {}   # extension -> remarks (e.g. callbacks never called)
        self.processing = ProcessingCallbacks()  # what jobs call (ctx.services.callbacks)
        self._reported: set[tuple[str, str]] = set()
        # the front end's context for extension code that imports UI libraries or builds UI
        # (webui: Gradio 3 compatibility, webui/ui/gradio3_compat.py); None: nothing around it
        self.ui_environment: Callable[[ExtensionScope], contextlib.AbstractContextManager] | None = None

    def ui_context(self, scope: ExtensionScope) -> contextlib.AbstractContextManager:
        """The front end's environment for `scope`'s import and UI-building code."""
        return self.ui_environment(scope) if self.ui_environment is not None else contextlib.nullcontext()

    def scope(self, extension: str, path: Path | None = None) -> ExtensionScope:
        return ExtensionScope(self, extension, path)

    def activate(self, scope: ExtensionScope) -> None:
        """Leave `scope` current in the calling thread's context (no reset): the fallback for
        extension code the web UI does not call itself, in threads/tasks started from here."""
        _scope.set(scope)

    # -- registering ------------------------------------------------------------------------------
    def add(self, kind: str, fn: Callable, scope: ExtensionScope, name: str | None = None,
            filename: str = "") -> None:
        if kind in NOT_CALLED:
            note = f"registers on_{kind}, which this web UI does not call"
            if note not in self.notes.setdefault(scope.extension, []):
                self.notes[scope.extension].append(note)
            return
        if kind not in self.callbacks:
            raise ValueError(f"unknown callback kind {kind!r}; one of {', '.join(KINDS)}")
        if not callable(fn):
            raise TypeError(f"on_{kind} needs a function, got {type(fn).__name__}")
        cb = Callback(kind, fn, scope, name or getattr(fn, "__name__", repr(fn)), filename)
        self.callbacks[kind].append(cb)
        if kind in _PROCESSING_LISTS:
            _PROCESSING_LISTS[kind](self.processing).append(lambda params, cb=cb: self._invoke(cb, params))

    def remove_extension(self, extension: str) -> None:
        for entries in self.callbacks.values():
            entries[:] = [cb for cb in entries if cb.scope.extension != extension]
        self._rebuild_processing()

    def remove_function(self, fn: Callable) -> None:
        for entries in self.callbacks.values():
            entries[:] = [cb for cb in entries if cb.fn is not fn]
        self._rebuild_processing()

    def remove_file(self, extension: str, filename: str) -> None:
        """Forget what one file of an extension registered (A1111's remove_current_script_callbacks)."""
        for entries in self.callbacks.values():
            entries[:] = [cb for cb in entries if not (cb.scope.extension == extension and cb.filename == filename)]
        self._rebuild_processing()

    def _rebuild_processing(self) -> None:
        for kind, get_list in _PROCESSING_LISTS.items():
            target = get_list(self.processing)
            target[:] = [lambda params, cb=cb: self._invoke(cb, params) for cb in self.callbacks[kind]]

    # -- calling ----------------------------------------------------------------------------------
    def call(self, kind: str, *args, **kwargs) -> list[tuple[Callback, Any]]:
        """Call every callback of `kind`; returns (callback, result) for the ones that succeeded."""
        out = []
        for cb in list(self.callbacks[kind]):
            ok, result = self._invoke_ok(cb, *args, **kwargs)
            if ok:
                out.append((cb, result))
        return out

    def call_ui(self, kind: str, *args, **kwargs) -> list[tuple[Callback, Any]]:
        """call() for callbacks that build UI: each inside its extension's ui_context."""
        out = []
        for cb in list(self.callbacks[kind]):
            with self.ui_context(cb.scope):
                ok, result = self._invoke_ok(cb, *args, **kwargs)
            if ok:
                out.append((cb, result))
        return out

    def _invoke(self, cb: Callback, *args) -> Any:
        return self._invoke_ok(cb, *args)[1]

    def _invoke_ok(self, cb: Callback, *args, **kwargs) -> tuple[bool, Any]:
        with extension_scope(cb.scope):
            try:
                return True, cb.fn(*args, **kwargs)
            except Exception as e:  # an extension's bug must not stop the app or the job
                self.report(cb.scope.extension, f"callback on_{cb.kind} ({cb.name})", e)
                return False, None

    def guarded(self, scope: ExtensionScope, where: str, fn: Callable, *args, **kwargs) -> tuple[bool, Any]:
        """Call extension code under its scope; an exception is reported and (False, None) returned."""
        with extension_scope(scope):
            try:
                return True, fn(*args, **kwargs)
            except Exception as e:
                self.report(scope.extension, where, e)
                return False, None

    def guarded_ui(self, scope: ExtensionScope, where: str, fn: Callable, *args, **kwargs) -> tuple[bool, Any]:
        """guarded() for extension code that builds UI (inside the front end's ui_context)."""
        with self.ui_context(scope):
            return self.guarded(scope, where, fn, *args, **kwargs)

    def report(self, extension: str, where: str, error: BaseException | str, details: str = "") -> None:
        """Log and record a problem once per (extension, where); later repeats are only counted."""
        key = (extension, where)
        if key in self._reported:
            log.debug("extension %s: %s failed again", extension, where)
            return
        self._reported.add(key)
        if isinstance(error, BaseException):
            message = f"{type(error).__name__}: {error}"
            details = details or "".join(traceback.format_exception(error))
        else:
            message = str(error)
        log.error("extension %s: %s failed: %s%s", extension, where, message, f"\n{details}" if details else "")
        self.problems.append(Problem(extension, where, message, details))

    def problems_of(self, extension: str) -> list[Problem]:
        return [p for p in self.problems if p.extension == extension]


def _caller_file() -> str:
    """The file of the code that called into this module (A1111 keys callbacks by script file)."""
    frame = sys._getframe(1)
    here = os.path.normcase(__file__)
    while frame is not None and os.path.normcase(frame.f_code.co_filename) == here:
        frame = frame.f_back
    return os.path.normcase(os.path.abspath(frame.f_code.co_filename)) if frame is not None else ""


def _register(kind: str, callback: Callable, name: str | None = None) -> None:
    scope = current_scope()
    scope.registry.add(kind, callback, scope, name, _caller_file())


def on_app_started(callback: Callable, *, name: str | None = None) -> None:
    """callback(demo: gr.Blocks | None, app: FastAPI) once the server is built."""
    _register("app_started", callback, name)


def on_model_loaded(callback: Callable, *, name: str | None = None) -> None:
    """callback(sd_model) after a checkpoint is loaded."""
    _register("model_loaded", callback, name)


def on_ui_tabs(callback: Callable, *, name: str | None = None) -> None:
    """callback() -> [(gr.Blocks, title, elem_id)]: extra top-level tabs."""
    _register("ui_tabs", callback, name)


def on_ui_settings(callback: Callable, *, name: str | None = None) -> None:
    """callback(): add settings with shared.opts.add_option(key, shared.OptionInfo(...))."""
    _register("ui_settings", callback, name)


def on_before_image_saved(callback: Callable, *, name: str | None = None) -> None:
    """callback(ImageSaveParams): may change params.image / params.pnginfo before the file is written."""
    _register("before_image_saved", callback, name)


def on_image_saved(callback: Callable, *, name: str | None = None) -> None:
    """callback(ImageSaveParams) after the file is written (params.filename is set)."""
    _register("image_saved", callback, name)


def on_cfg_denoiser(callback: Callable, *, name: str | None = None) -> None:
    """callback(CFGDenoiserParams) before the UNet runs, every sampling step."""
    _register("cfg_denoiser", callback, name)


def on_cfg_denoised(callback: Callable, *, name: str | None = None) -> None:
    """callback(CFGDenoisedParams) with the raw UNet predictions, before they are combined."""
    _register("cfg_denoised", callback, name)


def on_cfg_after_cfg(callback: Callable, *, name: str | None = None) -> None:
    """callback(AfterCFGCallbackParams) with the combined prediction."""
    _register("cfg_after_cfg", callback, name)


def on_infotext_pasted(callback: Callable, *, name: str | None = None) -> None:
    """callback(infotext: str, params: dict) may edit the parsed parameters before they fill the UI."""
    _register("infotext_pasted", callback, name)


def on_script_unloaded(callback: Callable, *, name: str | None = None) -> None:
    """callback() when the server shuts down."""
    _register("script_unloaded", callback, name)


def on_before_ui(callback: Callable, *, name: str | None = None) -> None:
    """callback() once, before the web UI's page is built."""
    _register("before_ui", callback, name)


def on_before_component(callback: Callable, *, name: str | None = None) -> None:
    """callback(component, **kwargs) for every Gradio component of the page (ours and extensions'),
    as it is created; kwargs are its constructor arguments, with elem_id. Components the callback
    creates are placed before it (A1111's order)."""
    _register("before_component", callback, name)


def on_after_component(callback: Callable, *, name: str | None = None) -> None:
    """callback(component, **kwargs) for every Gradio component of the page once it is built;
    components the callback creates are placed right after it."""
    _register("after_component", callback, name)


def _not_called(kind: str) -> Callable:
    def register(callback: Callable, *, name: str | None = None) -> None:
        _register(kind, callback, name)
    register.__name__ = f"on_{kind}"
    register.__doc__ = f"Accepted for A1111 compatibility; this web UI never calls on_{kind} callbacks."
    return register


on_ui_train_tabs = _not_called("ui_train_tabs")
on_list_optimizers = _not_called("list_optimizers")
on_list_unets = _not_called("list_unets")
on_image_grid = _not_called("image_grid")
on_extra_noise = _not_called("extra_noise")
on_before_reload = _not_called("before_reload")
on_before_token_counter = _not_called("before_token_counter")


def remove_current_script_callbacks() -> None:
    """Forget every callback the calling script file registered (A1111: scripts call this at the top
    so that reloading them does not register everything twice)."""
    scope = current_scope()
    scope.registry.remove_file(scope.extension, _caller_file())


def remove_callbacks_for_function(callback: Callable) -> None:
    current_scope().registry.remove_function(callback)


def __getattr__(name: str) -> Any:
    """callback_map: A1111's {"callbacks_<kind>": [...]} view of the current application's callbacks."""
    if name == "callback_map":
        registry = current_scope().registry
        return {f"callbacks_{kind}": list(entries) for kind, entries in registry.callbacks.items()}
    raise AttributeError(f"module 'modules.script_callbacks' has no attribute {name!r}")
