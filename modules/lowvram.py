"""A1111's `modules.lowvram` path, for extensions: is_enabled(sd_model), send_everything_to_cpu().
Extensions call the latter before loading a model of their own to free GPU memory; this web UI
keeps the loaded checkpoint where its device policy put it (--medvram/--lowvram move parts per
job), so there is nothing to move. Nothing in the project imports this module."""


def is_enabled(sd_model=None) -> bool:
    return False


def send_everything_to_cpu() -> None:
    """Nothing is parked on the GPU outside a job here."""
