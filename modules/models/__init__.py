"""Checkpoints: reading files safely (state_dict), telling their family (detect), building and loading
models (loader), the folder catalog with hashes (catalog), VAE files (vae), the loaded-model cache
and switching (manager), and per-job weight patches (patcher).
"""
