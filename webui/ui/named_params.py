"""Gradio handlers with named parameters, so gradio_client callers pass only the fields they care
about (`/txt2img` with prompt=..., steps=...; `/apply_settings` with jpeg_quality=...)."""
from __future__ import annotations

import inspect
from typing import Any, Callable


def named(impl: Callable, defaults: dict[str, Any], generator: bool = False) -> Callable:
    """A function with one parameter per name in `defaults` (with that default) that calls
    impl(**values); a generator function when `generator` (Gradio streams only real generators)."""
    signature = inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d)
                                   for name, d in defaults.items()])

    def values(args, kwargs) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    if generator:
        def fn(*args, **kwargs):
            yield from impl(**values(args, kwargs))
    else:
        def fn(*args, **kwargs):
            return impl(**values(args, kwargs))
    fn.__signature__ = signature
    return fn
