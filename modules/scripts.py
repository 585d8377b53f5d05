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
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.processing.objects import PostprocessImageArgs  # noqa: F401  (A1111 exports it here)
from modules.script_callbacks import ExtensionScope, current_scope


class AlwaysVisibleClass:
    def __repr__(self) -> str:
        return "AlwaysVisible"


AlwaysVisible = AlwaysVisibleClass()


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

    def describe(self) -> str:
        return ""

    def elem_id(self, item_id: str) -> str:
        """A stable html id for a control: script_<tab>_<title>_<item_id> (A1111's scheme)."""
        tab = "img2img" if self.is_img2img else "txt2img"
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tab}_{title}_{item_id}"


@dataclass
class ScriptClass:
    """A Script subclass found in an extension's scripts/*.py."""

    script_class: type
    path: Path
    scope: ExtensionScope

    @property
    def extension(self) -> str:
        return self.scope.extension


def script_classes_in(module, path: Path, scope: ExtensionScope) -> list[ScriptClass]:
    """The Script subclasses a script file defines (imported ones belong to their own file)."""
    out = []
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, Script) and value is not Script
                and value.__module__ == module.__name__):
            out.append(ScriptClass(value, path, scope))
    return out


def basedir() -> str:
    """The folder of the extension being loaded or called (A1111's scripts.basedir())."""
    scope = current_scope()
    return str(scope.path) if scope.path is not None else ""


def __getattr__(name: str):
    """scripts.scripts_txt2img / scripts_img2img: the current application's runners."""
    if name in ("scripts_txt2img", "scripts_img2img"):
        service = current_scope().ctx.services.scripts
        return service.runner(name == "scripts_img2img") if service is not None else None
    raise AttributeError(f"module 'modules.scripts' has no attribute {name!r}")
