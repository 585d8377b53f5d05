"""A1111's `modules.sd_models` path: checkpoint building and loading (modules.models.loader), and
for extensions A1111's checkpoint list names over the running application's model manager
(modules/plugins/compat/models.py): checkpoint_tiles(), list_models(), checkpoints_list,
checkpoint_aliases, get_closet_checkpoint_match(), select_checkpoint(), reload_model_weights(),
unload_model_weights(), model_data, model_hash(), read_metadata_from_safetensors(), CheckpointInfo.
`load_model` is this project's `load_model(path, config=None, device, dtype)` (README: Python API)."""
from modules.models.catalog import CheckpointInfo  # noqa: F401
from modules.models.catalog import legacy_model_hash as model_hash  # noqa: F401
from modules.models.loader import (  # noqa: F401
    CheckpointRefused,
    build_model,
    load_model,
    model_from_state_dict,
    read_state_dict,
)
from modules.plugins.compat.models import (  # noqa: F401
    ModelData,
    checkpoint_tiles,
    get_closet_checkpoint_match,
    list_models,
    read_metadata_from_safetensors,
    reload_model_weights,
    select_checkpoint,
    unload_model_weights,
)

model_data = ModelData()


def __getattr__(name: str):
    from modules.plugins.compat import models as a1111
    if name == "checkpoints_list":
        return a1111.checkpoints_list()
    if name == "checkpoint_aliases":
        return a1111.checkpoint_aliases()
    raise AttributeError(f"module 'modules.sd_models' has no attribute {name!r} in this web UI "
                         "(README: Extensions, A1111's module surface)")
