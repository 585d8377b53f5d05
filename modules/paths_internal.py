"""A1111's `modules.paths_internal` path, for extensions: the folders of the running application
(modules/plugins/compat/paths.py). Nothing in the project imports it."""
from modules.paths import ROOT  # noqa: F401


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.plugins.compat import paths as a1111
    return a1111.attribute("modules.paths_internal", name)
