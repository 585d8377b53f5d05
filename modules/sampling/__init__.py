"""Sampling: the k-diffusion sampler table (samplers), noise schedules (schedules), the samplers
k-diffusion lacks (functions), the CFG denoiser (cfg_denoiser) and seeds/noise (rng, rng_philox).

Below processing, above the networks: nothing here builds a request or reads the settings registry.
"""
