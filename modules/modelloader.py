"""A1111's `modules.modelloader` path, for extensions: load_upscalers() and cleanup_models(). Here
the upscaler table is complete when the application starts and model folders are never moved, so
both have nothing to do. A1111's download helpers (load_models, load_file_from_url) are not
available: this web UI does not download models. Nothing in the project imports this module."""


def load_upscalers() -> None:
    """The upscaler table (shared.sd_upscalers) is built at start-up: nothing to load."""


def cleanup_models() -> None:
    """A1111 moves model files of old folder layouts; this web UI's layout has nothing to move."""
