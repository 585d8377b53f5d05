"""A1111's `modules.models.loader` path: checkpoint building and loading (modules.models.loader)."""
from modules.models.loader import (  # noqa: F401
    CheckpointRefused,
    build_model,
    load_model,
    model_from_state_dict,
    read_state_dict,
)
