"""A1111's `modules.launch_utils` path (its launch.py API since 1.6), for extensions: is_installed,
run_pip, run, git_tag, commit_hash, python, index_url, args (modules/plugins/compat/launch.py)."""
from modules.plugins.compat.launch import (  # noqa: F401
    commit_hash,
    git_tag,
    index_url,
    is_installed,
    python,
    run,
    run_pip,
)


def __getattr__(name: str):
    if name == "args":
        from modules.plugins.compat.launch import parsed_args
        return parsed_args()
    raise AttributeError(f"module 'modules.launch_utils' has no attribute {name!r}")
