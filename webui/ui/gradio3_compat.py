"""Gradio 3.41 code of A1111 extensions, running on Gradio 6: every translation rule in one place.

A1111 v1.10 ships Gradio 3.41, and its extensions' `ui()` / `on_ui_tabs` code is written for it
(`_js=`, `.style(...)`, `gr.Box`, `gr.Button.update(...)`...). This web UI runs Gradio 6.

How it is scoped (no library class or function is changed, and our own UI never sees any of it):
`environment(scope)` is the context manager the extension loader enters around an extension's import
and around each of its UI-building calls (modules.script_callbacks.CallbackRegistry.ui_environment;
the server installs it, see `install`). Inside it `sys.modules["gradio"]` (and "gradio.components")
is a per-extension stand-in module whose component classes are *subclasses* of Gradio 6's that accept
Gradio 3 arguments and methods; every other name is Gradio's own. So an extension's
`import gradio as gr` binds the stand-in, and its event handlers keep working with Gradio 3 habits
(`return gr.Button.update(visible=False)`) long after the call returned. Outside these calls the
real module is back in sys.modules. Each translation is logged once per extension and listed on the
Extensions tab, so authors can update. Code with no Gradio 6 equivalent raises `Untranslatable`:
the extension's controls or tab are skipped with that message on the Extensions tab, and the rest
of the UI is built as usual.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
import types
from typing import Any

import gradio

import modules.ui_components  # noqa: F401 - Forge-aware extensions give their component classes this

# __module__ (Gradio 4+ reads the class's source file through it), so it must be in sys.modules

log = logging.getLogger("sdwebui.extensions")


class Untranslatable(TypeError):
    """Gradio 3 code this module cannot express in Gradio 6."""


class Notes:
    """Each translation once per extension: the log and the Extensions tab's notes."""

    def __init__(self, scope):
        self.scope, self.seen = scope, set()

    def __call__(self, rule: str, text: str) -> None:
        if rule in self.seen:
            return
        self.seen.add(rule)
        note = f"Gradio 3 code translated: {text}"
        self.scope.registry.notes.setdefault(self.scope.extension, []).append(note)
        log.info("extension %s: %s", self.scope.extension, note)


# -- the rules for constructor arguments ---------------------------------------------------------------
def _parameters(orig: type) -> tuple[set[str], bool]:
    """The keyword names orig.__init__ takes, and whether it takes **kwargs."""
    params = inspect.signature(orig.__init__).parameters
    return set(params) - {"self"}, any(p.kind is p.VAR_KEYWORD for p in params.values())


def translate_init(orig: type, kwargs: dict, note: Notes) -> dict:
    """Gradio 3 constructor arguments of `orig` -> Gradio 6 ones."""
    known, open_kwargs = _parameters(orig)
    _image_rules(orig, kwargs, known, note)
    _changed_defaults(orig, kwargs, known, note)
    if issubclass(orig, gradio.Button) and kwargs.get("variant") == "tool":
        # A1111's ToolButton variant "tool" is its CSS; Gradio 6 knows only its own variants
        kwargs["variant"] = "secondary"
        kwargs["elem_classes"] = [*_classes(kwargs.get("elem_classes")), "tool"]
    if isinstance(kwargs.get("scale"), float) and "scale" in known:
        # Gradio 3 took scale=0.5 on columns; Gradio 6 scales are whole numbers
        kwargs["scale"] = max(0, round(kwargs["scale"]))
    if not open_kwargs:
        # keyword arguments Gradio 6 removed (interpretation, brush_radius, shape, mirror_webcam,
        # max_rows, ...): dropped, each noted
        for key in [k for k in kwargs if k not in known]:
            kwargs.pop(key)
            note(f"{orig.__name__}.{key}", f"gr.{orig.__name__}({key}=...) dropped (not a Gradio 6 argument)")
    return kwargs


def _image_rules(orig: type, kwargs: dict, known: set, note: Notes) -> None:
    name = orig.__name__
    if "source" in kwargs and "sources" in known:
        # Image/Audio/Video(source="upload") -> sources=["upload"] (Gradio 4 made it a list); the
        # Gradio 3 "canvas" source belonged to the sketch tool (below)
        source = kwargs.pop("source")
        if source == "canvas":
            raise Untranslatable(f"gr.{name}(source='canvas') (a drawing canvas) has no Gradio 6 equivalent")
        kwargs["sources"] = [source]
        note(f"{name}.source", f"gr.{name}(source=...) -> sources=[...]")
    if "tool" in kwargs and issubclass(orig, gradio.Image):
        # Image(tool="sketch"/"color-sketch") returned {"image", "mask"} from Gradio 3's own canvas:
        # Gradio 6's ImageEditor gives layers in another shape, so such controls are not translated;
        # tool="editor"/"select"/None only chose the editing buttons: dropped
        tool = kwargs.pop("tool")
        if tool in ("sketch", "color-sketch"):
            raise Untranslatable(f"gr.{name}(tool={tool!r}) (Gradio 3's sketch canvas, whose value is "
                                 "{'image', 'mask'}) has no Gradio 6 equivalent")
        note(f"{name}.tool", f"gr.{name}(tool={tool!r}) dropped (Gradio 6 images have no tool choice)")


def _changed_defaults(orig: type, kwargs: dict, known: set, note: Notes) -> None:
    if kwargs.get("visible") is False and "visible" in known:
        # Gradio 3 kept invisible components in the page (hidden), and extensions' javascript finds
        # them there (hidden checkboxes and textboxes carry values between their scripts and
        # Python); Gradio 6 leaves visible=False ones out of the page: "hidden" keeps them
        kwargs["visible"] = "hidden"
        note("visible", "visible=False -> visible='hidden' (kept in the page, as Gradio 3 did)")
    if issubclass(orig, gradio.Dropdown) and "value" not in kwargs:
        # Gradio 5+ selects the first choice when no value is given; Gradio 3 left the dropdown
        # empty (None)
        kwargs["value"] = None
    if issubclass(orig, gradio.Textbox) and kwargs.get("value") is None:
        # a Gradio 3 textbox without a value held "" (Gradio 6: None), and scripts call .split()
        # and the like on what they get
        kwargs["value"] = ""
    if issubclass(orig, gradio.Tab) and "render_children" not in kwargs:
        # Gradio 3 put every tab's content in the page (hidden); Gradio 6 adds a tab's content when
        # it is first shown, and extensions' javascript looks for it earlier
        kwargs["render_children"] = True
    if issubclass(orig, gradio.Gallery) and "format" not in kwargs:
        # Gradio 6 galleries convert images to webp, dropping PNG text (infotext); Gradio 3 kept PNG
        kwargs["format"] = "png"
    if issubclass(orig, gradio.File) and kwargs.get("type", "file") == "file":
        # Gradio 3's default type "file" (a temp file object: `.name` is its path) is gone; values
        # come as paths that also have `.name` (see Component.preprocess below)
        kwargs["type"] = "filepath"


def _classes(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


# -- the rules for event listeners (.click(...), .change(...), Blocks.load(...), .then(...)) ---------------
def translate_event(kwargs: dict, note: Notes, where: str) -> dict:
    if "_js" in kwargs:
        # `_js=` was renamed `js=` in Gradio 4 (same JavaScript function, same arguments)
        kwargs["js"] = kwargs.pop("_js")
        note("_js", f"`_js=` -> `js=` ({where})")
    if isinstance(kwargs.get("show_progress"), bool):
        # show_progress=True/False -> "full"/"hidden"
        kwargs["show_progress"] = "full" if kwargs["show_progress"] else "hidden"
        note("show_progress", "show_progress=True/False -> 'full'/'hidden'")
    if kwargs.get("api_name", None) is False:
        # api_name=False (hide the endpoint) -> api_visibility="private"
        kwargs["api_name"] = None
        kwargs["api_visibility"] = "private"
        note("api_name", "api_name=False -> api_visibility='private'")
    for key in ("every", "status_tracker"):
        # `every=` (polling) and `status_tracker=` are gone from event listeners: dropped (an
        # extension that refreshed something every few seconds refreshes on the event only)
        if key in kwargs:
            kwargs.pop(key)
            note(f"event.{key}", f"`{key}=` dropped from {where} (not a Gradio 6 event argument)")
    return kwargs


def _translating_listener(listener, note: Notes, where: str):
    @functools.wraps(listener)
    def wrapper(*args, **kwargs):
        dependency = listener(*args, **translate_event(kwargs, note, where))
        for name in ("then", "success", "failure"):
            follow = getattr(dependency, name, None)
            if follow is not None:
                setattr(dependency, name, _translating_listener(follow, note, f"{where}.{name}"))
        return dependency
    return wrapper


def translate_update(kwargs: dict) -> dict:
    """gr.update(...) of extension code: visible=False keeps the component in the page (see
    translate_init), other arguments as given."""
    if kwargs.get("visible") is False:
        kwargs["visible"] = "hidden"
    return gradio.update(**kwargs)


# -- the methods Gradio 3 components had ---------------------------------------------------------------
STYLE_ATTRIBUTES = {
    # .style(...) argument -> the Gradio 6 attribute it became (set on the component)
    "container": "container", "height": "height", "width": "width", "size": "size", "rows": "rows",
    "columns": "columns", "grid": "columns", "object_fit": "object_fit", "preview": "preview",
    "equal_height": "equal_height", "min_width": "min_width", "scale": "scale",
}


def _style(self, **kwargs):
    """Gradio 3's `component.style(...)` (removed in Gradio 4): each argument becomes the matching
    Gradio 6 attribute where the component has one; full_width=True/False -> scale 1/0; purely
    visual ones (rounded, border, margin, mobile_collapse) are dropped."""
    self._g3_note("style", f"{type(self).__name__}.style(...) -> attributes")
    for key, value in kwargs.items():
        if key == "full_width":
            self.scale = 1 if value else 0
        elif key in STYLE_ATTRIBUTES and hasattr(self, STYLE_ATTRIBUTES[key]):
            setattr(self, STYLE_ATTRIBUTES[key], value)
    return self


class NamedPath(str):
    """A file path that also has `.name` (Gradio 3 handed temp file objects whose .name was the path)."""

    @property
    def name(self) -> str:
        return str(self)


def _named(value):
    if isinstance(value, str):
        return NamedPath(value)
    if isinstance(value, list):
        return [_named(v) for v in value]
    return value


# -- the stand-in classes --------------------------------------------------------------------------------
def _probe_name(orig: type, method: str) -> str:
    """What Gradio calls an instance of orig (its front-end component), without building one."""
    probe = orig.__new__(orig)
    return getattr(orig, method)(probe)


def compat_class(orig: type, note: Notes, alias: str | None = None) -> type:
    """A subclass of a Gradio 6 block class that takes Gradio 3 arguments and has Gradio 3 methods."""
    signature = inspect.signature(orig.__init__)
    block_name, block_class = _probe_name(orig, "get_block_name"), _probe_name(orig, "get_block_class")

    positional = [n for n, p in signature.parameters.items()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"]

    def __init__(self, *args, **kwargs):  # noqa: N807
        if len(args) > len(positional):
            raise TypeError(f"gr.{orig.__name__}() takes at most {len(positional)} positional arguments")
        given = dict(zip(positional, args, strict=False))
        for key in given.keys() & kwargs.keys():
            raise TypeError(f"gr.{orig.__name__}() got multiple values for argument {key!r}")
        self._g3_note = note
        self._g3_named_files = issubclass(orig, gradio.File)
        orig.__init__(self, **translate_init(orig, {**given, **kwargs}, note))
        if isinstance(self, gradio.Blocks):  # an on_ui_tabs tab: its components get the component callbacks
            from webui.ui import component_hooks
            component_hooks.watch_if_building(self)

    __init__.__signature__ = signature  # Gradio builds a component's config from its __init__ signature

    def __init_subclass__(cls, **kw):
        # an extension's own subclass (A1111's `class ToolButton(gr.Button)` with *args/**kwargs):
        # Gradio 6 would drop its positional arguments and its config, so its __init__ is called
        # directly and Gradio reads the base's signature
        super(compat, cls).__init_subclass__(**kw)  # noqa: F821 - compat is defined below
        own = cls.__dict__.get("__init__")
        if own is not None:
            inner = getattr(own, "__wrapped__", own)  # under Gradio's wrapper: the extension's own

            def init(self, *args, **kwargs):
                inner(self, *args, **kwargs)
            init.__signature__ = signature
            cls.__init__ = init

    @classmethod
    def update(cls, **kwargs):
        # `gr.Button.update(...)` (removed in Gradio 4) -> gr.update(...)
        note("update", f"gr.{alias or orig.__name__}.update(...) -> gr.update(...)")
        return translate_update(kwargs)

    def preprocess(self, payload):
        value = orig.preprocess(self, payload)
        return _named(value) if getattr(self, "_g3_named_files", False) else value

    namespace = {
        "__init__": __init__, "__init_subclass__": classmethod(__init_subclass__), "__module__": __name__,
        "__doc__": orig.__doc__, "update": update, "style": _style,
        "get_block_name": lambda self: block_name, "get_block_class": lambda self: block_class,
        "_g3_original": orig,
    }
    if hasattr(orig, "preprocess"):
        namespace["preprocess"] = preprocess
    for event in getattr(orig, "EVENTS", []):
        event_name = event if isinstance(event, str) else event.event_name
        namespace[event_name] = _translating_listener(getattr(orig, event_name), note, f"{orig.__name__}.{event_name}")
    if issubclass(orig, gradio.Blocks):
        namespace["load"] = _translating_listener(orig.load, note, "Blocks.load")
    meta = _meta(type(orig))
    # made without running Gradio's metaclass body: it would look for this class's source code (to
    # write a .pyi stub beside it); with no attributes of its own there is nothing for it to wrap
    plain = next(m for m in meta.__mro__ if not m.__module__.startswith(("gradio", __name__)))
    compat = plain.__new__(meta, orig.__name__, (orig,), {"__module__": __name__})
    for key, value in namespace.items():
        setattr(compat, key, value)
    return compat


@functools.cache
def _meta(meta: type) -> type:
    """Gradio's metaclass, plus: an instance of the Gradio class is an instance of its stand-in, so
    `isinstance(component, gr.Slider)` in an extension holds for the page's own sliders too."""

    def __instancecheck__(cls, obj):  # noqa: N807
        orig = cls.__dict__.get("_g3_original")
        return orig in type(obj).__mro__ if orig is not None else meta.__instancecheck__(cls, obj)

    def __subclasscheck__(cls, sub):  # noqa: N807
        orig = cls.__dict__.get("_g3_original")
        if orig is None:
            return meta.__subclasscheck__(cls, sub)
        return isinstance(sub, type) and orig in sub.__mro__  # plain MRO test: ABC's would recurse

    return type(f"Gradio3{meta.__name__}", (meta,), {"__instancecheck__": __instancecheck__,
                                                       "__subclasscheck__": __subclasscheck__})


# the Gradio 3 names Gradio 6 no longer has
RENAMED = {
    "Box": "Group",              # gr.Box (a bordered group) was removed in Gradio 4: a gr.Group
    "Variable": "State",         # Gradio 2/3's old name of gr.State
    "IOComponent": "Component",  # gr.components.IOComponent, Gradio 3's base class of inputs/outputs
}


# base classes extensions subclass or test with isinstance: kept as Gradio's own
UNCHANGED = (gradio.blocks.Block, gradio.blocks.BlockContext, gradio.components.Component,
             gradio.components.FormComponent)


class GradioStandIn(types.ModuleType):
    """What `import gradio` gives an extension: Gradio's module, with compat classes for blocks."""

    def __init__(self, real: types.ModuleType, note: Notes, name: str, classes: dict | None = None):
        super().__init__(name)
        self._real, self._note = real, note
        self._classes: dict[type, type] = {} if classes is None else classes  # Gradio class -> stand-in
        for key in ("__file__", "__path__", "__spec__", "__version__", "__package__"):
            if hasattr(real, key):
                setattr(self, key, getattr(real, key))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = RENAMED.get(name, name)
        value = getattr(self._real, target, None)
        if value is None:
            value = getattr(gradio, target, None) if target != name else None
        if value is None:
            raise AttributeError(f"module 'gradio' has no attribute {name!r} (Gradio 6)")
        if name == "update":  # gr.update(visible=False): see translate_update
            value = lambda **kwargs: translate_update(kwargs)  # noqa: E731
        elif name == "components" and isinstance(value, types.ModuleType):
            value = GradioStandIn(value, self._note, value.__name__, self._classes)
        elif isinstance(value, type) and issubclass(value, gradio.blocks.Block) and value not in UNCHANGED:
            if value not in self._classes:
                self._classes[value] = compat_class(value, self._note, alias=name)
            value = self._classes[value]
        if name != target:
            self._note(f"renamed.{name}", f"gr.{name} -> gr.{target}")
        setattr(self, name, value)  # found once: later reads skip __getattr__
        return value


def stand_ins(scope) -> tuple[GradioStandIn, GradioStandIn]:
    """The extension's gradio and gradio.components stand-ins (made once, kept on its scope)."""
    cached = scope.front_end.get("gradio3")
    if cached is None:
        note = Notes(scope)
        top = GradioStandIn(gradio, note, "gradio")
        cached = scope.front_end["gradio3"] = (top, top.components)
    return cached


@contextlib.contextmanager
def environment(scope):
    """Run extension code (import, ui(), on_ui_tabs...) with its Gradio 3 stand-ins as `gradio`."""
    top, components = stand_ins(scope)
    saved = sys.modules.get("gradio"), sys.modules.get("gradio.components")
    sys.modules["gradio"], sys.modules["gradio.components"] = top, components
    try:
        yield
    finally:
        sys.modules["gradio"], sys.modules["gradio.components"] = saved


