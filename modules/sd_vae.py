"""A1111's `modules.sd_vae` path: VAE files (modules.models.vae), and for extensions `vae_dict`,
`refresh_vae_list()`, `find_vae_near_checkpoint()` over the running application's VAE catalog."""
from modules.models.vae import VaeCatalog, VaeInfo, read_vae_state_dict, swap_vae, vae_beside  # noqa: F401
from modules.plugins.compat.models import find_vae_near_checkpoint, refresh_vae_list  # noqa: F401


def __getattr__(name: str):
    if name == "vae_dict":
        from modules.plugins.compat import models as a1111
        return a1111.vae_dict()
    raise AttributeError(f"module 'modules.sd_vae' has no attribute {name!r} in this web UI "
                         "(README: Extensions, A1111's module surface)")
