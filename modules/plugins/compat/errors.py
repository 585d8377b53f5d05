"""A1111's `modules.errors` functions for extensions (report, display, display_once, run,
print_error_explanation). report() logs; display() records the exception as a problem of the
calling extension (the log and the Extensions tab, once per task, like every extension error)."""
from __future__ import annotations

import logging
import traceback

from modules.script_callbacks import _scope

log = logging.getLogger("sdwebui.extensions")


def report(message: str, *, exc_info: bool = False) -> None:
    log.error("%s", message, exc_info=exc_info)


def print_error_explanation(message: str) -> None:
    log.error("%s", message)


def display(e: BaseException, task: str, *, full_traceback: bool = False) -> None:
    scope = _scope.get()
    if scope is None:
        log.error("%s: %s\n%s", task, f"{type(e).__name__}: {e}", "".join(traceback.format_exception(e)))
        return
    scope.registry.report(scope.extension, task, e)


def display_once(e: BaseException, task: str) -> None:
    display(e, task)  # the registry reports a task's error once


def run(code, task: str) -> None:
    try:
        code()
    except Exception as e:  # noqa: BLE001 - A1111's errors.run reports and goes on
        display(e, task)


def record_exception() -> None:
    """A1111 keeps recent exceptions for its sysinfo page; the log has them here."""


def attribute(name: str):
    if name in ("report", "print_error_explanation", "display", "display_once", "run", "record_exception"):
        return globals()[name]
    raise AttributeError(f"module 'modules.errors' has no attribute {name!r}")
