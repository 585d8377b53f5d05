"""A1111's built-in Lora extension's module `lora` (`import lora`), which extensions such as Regional
Prompter read. This web UI's LoRA support is part of the engine (modules/lora: applied per job
through the model patcher), not that extension, so `loaded_loras` - A1111's list of its own network
objects, which extensions patch - is always empty here, and `available_loras` lists the files of the
Lora folder by name. `register()` puts the module in sys.modules when extensions load (unless a
real `lora` module is installed)."""
from __future__ import annotations

import importlib.util
import sys
import types

from modules.script_callbacks import current_scope


class _Lora(types.ModuleType):
    @property
    def loaded_loras(self) -> list:
        return []  # a new list each time: extensions clear or append to it (see the docstring)

    @property
    def available_loras(self) -> dict:
        database = current_scope().ctx.services.lora
        return {item["name"]: item.get("path") for item in (database.as_api() if database is not None else [])}

    def list_available_loras(self) -> None:
        """The Lora folder is scanned when a prompt names a LoRA; nothing to do."""


def register() -> None:
    if "lora" in sys.modules or importlib.util.find_spec("lora") is not None:
        return
    sys.modules["lora"] = _Lora("lora", __doc__)
