"""The Stable Diffusion v1/v2 networks, with attribute names equal to the checkpoint keys.

    unet.py              UNetModel (openaimodel), attention.py: its transformers, injectable attention
    autoencoder.py       AutoencoderKL + DiagonalGaussianDistribution
    clip_text.py         FrozenCLIPEmbedder (v1), FrozenOpenCLIPEmbedder (v2), shared tokenizer
    latent_diffusion.py  the LatentDiffusion-compatible wrapper (+ inpaint, depth, x4 upscale kinds)
    midas.py             MiDaS depth model for depth2img
    config.py            yaml (original schema) -> model: build_from_config(config, device, dtype)
"""
