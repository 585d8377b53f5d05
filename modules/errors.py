"""The one error type every front end renders: a request the engine refuses or could not finish.

The engine raises RequestError with a message written for the user, the request field at fault
(when one is), and an HTTP-like status: 422 bad input, 503 nothing to run it with (no checkpoint),
500 it failed (out of memory, a script that crashed). The API answers with that status (a 422 in
FastAPI's shape, naming the field); the web UI shows the message.
"""
from __future__ import annotations


class RequestError(Exception):
    def __init__(self, message: str, field: str | tuple | None = None, status: int = 422):
        super().__init__(message)
        self.message, self.field, self.status = message, field, status

    @property
    def field_name(self) -> str:
        """The field as one dotted name ('override_settings.rho'), '' when there is none."""
        if self.field is None:
            return ""
        return self.field if isinstance(self.field, str) else ".".join(str(f) for f in self.field)

    def __str__(self) -> str:
        name = self.field_name
        return f"{name}: {self.message}" if name and not self.message.startswith(name) else self.message


def __getattr__(name: str):
    """A1111's error-reporting functions for extensions (modules/plugins/compat/errors.py)."""
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.plugins.compat import errors as a1111
    return a1111.attribute(name)
