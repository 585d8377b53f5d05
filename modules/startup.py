"""Start-up of the engine parts that hang off the application context (models, extensions...).

Kept apart from context.py so that creating a context for tests stays cheap.
"""
from __future__ import annotations

import logging

from modules.context import AppContext

log = logging.getLogger("sdwebui")


def attach_engine(ctx: AppContext) -> None:
    """Attach what exists of the engine; each part logs its own problems and the server still starts."""
    try:
        from modules import model_manager
        create = model_manager.create_for_context
    except (ImportError, AttributeError):
        log.info("the checkpoint loader has not landed yet: the UI says so")
        return
    ctx.models = create(ctx)
