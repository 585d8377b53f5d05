"""A1111's `modules.scripts`: the `Script` base class extensions subclass in their `scripts/*.py`.

    class Script(scripts.Script):
        def title(self): return "My script"
        def show(self, is_img2img): return scripts.AlwaysVisible   # or True (dropdown) / False
        def ui(self, is_img2img): return [gr.Checkbox(label="On")]  # or {"enabled": gr.Checkbox(...)}
        def process(self, p, enabled): ...                          # AlwaysVisible hooks
        def run(self, p, enabled): return processing.process_images(p)  # dropdown scripts

The values of the controls `ui()` returns arrive in every hook after the fixed arguments: by position
when ui() returns a list (A1111), by keyword when it returns a dict of name -> component. The runner
(modules/plugins/runner.py) calls the hooks, each isolated: an exception is reported once with the
extension's name and the job goes on.

Module-level names that depend on the running application (`scripts_data`, `scripts_txt2img`,
`scripts_img2img`, `scripts_current`, `current_basedir`) are looked up in the extension scope that is
current (modules/script_callbacks.py), like modules.shared: no globals here. README "Extensions:
A1111's module surface" lists what exists.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from modules.paths import ROOT
from modules.processing.objects import PostprocessImageArgs  # noqa: F401  (A1111 exports it here)
from modules.script_callbacks import ExtensionScope, current_scope


class AlwaysVisibleClass:
    def __repr__(self) -> str:
        return "AlwaysVisible"


AlwaysVisible = AlwaysVisibleClass()


@dataclass
class PostprocessBatchListArgs:
    """A1111's name; this web UI calls postprocess_batch (not postprocess_batch_list)."""

    images: list


@dataclass
class OnComponent:
    """What Script.on_before_component / on_after_component callbacks receive (A1111 1.6+)."""

    component: Any


class Script:
    """Override title(); then ui()/show() and run() (dropdown) or the hooks (AlwaysVisible)."""

    filename: str | None = None
    extension: str = ""            # the extension's name (set by the loader)
    args_from: int | None = None   # this script's slice of p.script_args
    args_to: int | None = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    group = None
    infotext_fields: list | None = None   # [(component, "Infotext key")] for pasting parameters
    paste_field_names: list | None = None
    api_info: dict | None = None          # filled by the runner: name, is_alwayson, is_img2img, args
    controls: Any = None                  # what ui() returned, as built last
    section: str | None = None
    name: str | None = None
    sorting_priority: int = 0
    tabname: str | None = None
    on_before_component_elem_id: list | None = None  # [(elem_id, callback)] (A1111 1.6+)
    on_after_component_elem_id: list | None = None

    def title(self) -> str:
        raise NotImplementedError(f"{type(self).__name__} must define title()")

    def ui(self, is_img2img: bool):
        return []

    def show(self, is_img2img: bool):
        return True

    def run(self, p, *args, **kwargs):
        return None

    def setup(self, p, *args, **kwargs) -> None: ...
    def before_process(self, p, *args, **kwargs) -> None: ...
    def process(self, p, *args, **kwargs) -> None: ...
    def before_process_batch(self, p, *args, **kwargs) -> None: ...
    def process_batch(self, p, *args, **kwargs) -> None: ...
    def postprocess_batch(self, p, *args, **kwargs) -> None: ...
    def postprocess_image(self, p, pp: PostprocessImageArgs, *args, **kwargs) -> None: ...
    def postprocess(self, p, processed, *args, **kwargs) -> None: ...

    def before_component(self, component, **kwargs) -> None:
        """Called for every component of this script's tab before it is built (A1111)."""

    def after_component(self, component, **kwargs) -> None:
        """Called for every component of this script's tab once it is built (A1111)."""

    def on_before_component(self, callback: Callable, *, elem_id: str) -> None:
        """callback(OnComponent) before the component with this elem_id is built (A1111 1.6+)."""
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback: Callable, *, elem_id: str) -> None:
        """callback(OnComponent) once the component with this elem_id is built (A1111 1.6+)."""
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self) -> str:
        return ""

    def elem_id(self, item_id: str) -> str:
        """A stable html id for a control: script_<tab>_<title>_<item_id> (A1111's scheme)."""
        tab = "img2img" if self.is_img2img else "txt2img"
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}_{title}_{item_id}"


@dataclass
class ScriptClass:
    """A Script subclass found in an extension's scripts/*.py; A1111's ScriptClassData fields
    (script_class, path, basedir, module) are properties."""

    script_class: type
    file: Path
    scope: ExtensionScope
    extra: dict = field(default_factory=dict)

    @property
    def extension(self) -> str:
        return self.scope.extension

    @property
    def path(self) -> str:
        return str(self.file)

    @property
    def basedir(self) -> str:
        return str(self.scope.path) if self.scope.path is not None else str(ROOT)

    @property
    def module(self):
        return sys.modules.get(self.script_class.__module__) or self.extra.get("module")


def script_classes_in(module, path: Path, scope: ExtensionScope) -> list[ScriptClass]:
    """The Script subclasses in a script file's namespace, defined there or imported (A1111's rule:
    extensions such as Dynamic Prompts define their Script in a package and import it)."""
    out = []
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Script) and value is not Script:
            out.append(ScriptClass(value, path, scope, {"module": module}))
    return out


def basedir() -> str:
    """The folder of the extension being loaded or called (A1111's scripts.basedir())."""
    scope = current_scope()
    return str(scope.path) if scope.path is not None else str(ROOT)


@dataclass
class ScriptFile:
    """A1111's ScriptFile(basedir, filename, path) as list_scripts returns them."""

    basedir: str
    filename: str
    path: str


def _extension_dirs() -> list[Path]:
    manager = current_scope().ctx.extensions
    return [e.path for e in manager.loaded] if manager is not None else []


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[ScriptFile]:
    """Files ending in `extension` in <extension>/<scriptdirname>/ of every loaded extension."""
    out = []
    for base in (_extension_dirs() if include_extensions else []):
        folder = base / scriptdirname
        if folder.is_dir():
            out += [ScriptFile(str(base), f.name, str(f)) for f in sorted(folder.iterdir())
                    if f.is_file() and f.name.endswith(extension)]
    return out


def list_files_with_name(filename: str) -> list[str]:
    """<extension>/<filename> of every loaded extension that has one (A1111: e.g. "style.css")."""
    return [str(base / filename) for base in _extension_dirs() if (base / filename).is_file()]


def _service():
    return current_scope().ctx.services.scripts


def __getattr__(name: str):
    """The current application's runners and scripts (A1111's module globals)."""
    if name in ("scripts_txt2img", "scripts_img2img"):
        service = _service()
        return service.runner(name == "scripts_img2img") if service is not None else None
    if name == "scripts_current":  # the runner whose tab is being built, else None
        service = _service()
        return getattr(service, "current_runner", None) if service is not None else None
    if name == "scripts_data":  # every Script class loaded so far (A1111's ScriptClassData list)
        manager = current_scope().ctx.extensions
        return list(manager.script_classes) if manager is not None else []
    if name in ("postprocessing_scripts_data", "scripts_postproc"):
        return [] if name == "postprocessing_scripts_data" else None
    if name == "current_basedir":
        return basedir()
    if name == "ScriptRunner":
        from modules.plugins.runner import ScriptRunner
        return ScriptRunner
    raise AttributeError(f"module 'modules.scripts' has no attribute {name!r} in this web UI "
                         "(README: Extensions, A1111's module surface)")


__all__ = ["AlwaysVisible", "OnComponent", "PostprocessBatchListArgs", "PostprocessImageArgs", "Script",
           "ScriptClass", "ScriptFile", "basedir", "list_files_with_name", "list_scripts"]
