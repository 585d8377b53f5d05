"""A1111's `modules.models.vae` path: VAE files (modules.models.vae)."""
from modules.models.vae import VaeCatalog, VaeInfo, read_vae_state_dict, swap_vae, vae_beside  # noqa: F401
