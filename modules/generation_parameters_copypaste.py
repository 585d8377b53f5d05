"""A1111's old module path `modules.generation_parameters_copypaste` (renamed infotext_utils in
A1111 1.8; both exist there): the same names as modules/infotext_utils.py."""
from modules.infotext_utils import *  # noqa: F403
from modules.infotext_utils import (  # noqa: F401
    ParamBinding,
    add_paste_fields,
    create_override_settings_dict,
    parse_generation_parameters,
    quote,
    register_paste_params_button,
    unquote,
)


def __getattr__(name: str):
    from modules import infotext_utils
    return getattr(infotext_utils, name)
