"""LDSR: CompVis latent diffusion's 4x super-resolution model (`bsr_sr`), the way A1111 runs it.

    checkpoint.py  models/LDSR/model.{safetensors,ckpt} + project.yaml -> LatentDiffusion (EMA weights)
    ddim.py        the DDIM sampler of the LDM code (uniform timesteps, eta)
    tiling.py      overlapping 128x128 latent tiles blended by distance to the tile border
    upscale.py     pre-resize, pad, sample, tiled decode, crop: one image -> 4x
    service.py     the "LDSR" entry of the upscaler table (Extras, hires fix): settings, cache, progress
"""
