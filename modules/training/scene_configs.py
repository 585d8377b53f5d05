"""The yaml of the depth2img and x4 demo models: configs/v2-midas-inference.yaml and
configs/x4-upscaling.yaml at tiny sizes (same schema and targets, so the app loads them as SD 2
depth and x4 checkpoints). Sizes chosen by timing pilot runs on one core (see demo_scenes)."""
from __future__ import annotations

IMAGE_SIZE = 64  # pixels; both models' latents are 16x16 (f4 autoencoder)

# f4 like the x4 upscaler's own VAE (3 levels); 64 channels give GroupNorm(32) two channels per
# group (with one, each channel is normalised alone per image and flat colours are lost: see demo.py)
FIRST_STAGE_PARAMS = {
    "embed_dim": 4,
    "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": IMAGE_SIZE, "in_channels": 3, "out_ch": 3,
        "ch": 64, "ch_mult": [1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
    },
}

# DPT-Hybrid at 64 px: R50-like stem with one block per stage, a 4-block ViT on the 4x4 grid of /16
# features, hooks at its last two blocks (the full model: 12 blocks, hooks 8 and 11, 384 px)
MIDAS_PARAMS = {
    "model_type": "dpt_hybrid", "stem_chs": 32, "layers": [1, 1, 1], "channels": [32, 64, 128],
    "norm_groups": 8, "embed_dim": 96, "depth": 4, "num_heads": 4, "hooks": [2, 3], "img_size": IMAGE_SIZE,
    "features": 48, "num_classes": 1,
}

# OpenCLIP ViT-H/14's layout at width 64: 3 blocks, of which "penultimate" uses 2 (as SD 2 uses 23 of 24)
DEPTH_TEXT_PARAMS = {"freeze": True, "layer": "penultimate", "width": 64, "layers": 3, "heads": 4, "embed_dim": 64}
X4_TEXT_PARAMS = {"freeze": True, "layer": "penultimate", "width": 32, "layers": 3, "heads": 2, "embed_dim": 32}

DEPTH_UNET_PARAMS = {
    "use_checkpoint": False, "image_size": IMAGE_SIZE // 4, "in_channels": 5, "out_channels": 4,
    "model_channels": 64, "attention_resolutions": [2, 4], "num_res_blocks": 1, "channel_mult": [1, 2, 2],
    "num_head_channels": 32, "use_spatial_transformer": True, "use_linear_in_transformer": True,
    "transformer_depth": 1, "context_dim": DEPTH_TEXT_PARAMS["width"], "legacy": False,
}

# self-attention off at every level (the original keeps it at its lowest level only): upscaling is
# local, and a picture or tile of any size then meets what the 16x16 training crops showed it
X4_UNET_PARAMS = {
    "use_checkpoint": False, "num_classes": 1000, "image_size": IMAGE_SIZE // 4, "in_channels": 7,
    "out_channels": 4, "model_channels": 64, "attention_resolutions": [2, 4], "num_res_blocks": 1,
    "channel_mult": [1, 1, 2], "disable_self_attentions": [True, True, True], "disable_middle_self_attn": True,
    "num_heads": 2, "use_spatial_transformer": True, "transformer_depth": 1,
    "context_dim": X4_TEXT_PARAMS["width"], "legacy": False, "use_linear_in_transformer": True,
}


def _first_stage() -> dict:
    return {"target": "ldm.models.autoencoder.AutoencoderKL",
            "params": {**FIRST_STAGE_PARAMS, "lossconfig": {"target": "torch.nn.Identity"}}}


def _unet(params: dict) -> dict:
    return {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": dict(params)}


def _text(params: dict) -> dict:
    return {"target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder", "params": dict(params)}


def depth_config(scale_factor: float) -> dict:
    """v2-midas-inference.yaml at the demo's sizes."""
    return {"model": {
        "base_learning_rate": 1.0e-3,
        "target": "ldm.models.diffusion.ddpm.LatentDepth2ImageDiffusion",
        "params": {
            "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "log_every_t": 200,
            "timesteps": 1000, "first_stage_key": "jpg", "cond_stage_key": "txt", "image_size": IMAGE_SIZE // 4,
            "channels": 4, "cond_stage_trainable": True, "conditioning_key": "hybrid",
            "scale_factor": round(scale_factor, 5), "monitor": "val/loss_simple_ema", "finetune_keys": None,
            "use_ema": False,
            "depth_stage_config": {"target": "ldm.modules.midas.api.MiDaSInference", "params": dict(MIDAS_PARAMS)},
            "unet_config": _unet(DEPTH_UNET_PARAMS),
            "first_stage_config": _first_stage(),
            "cond_stage_config": _text(DEPTH_TEXT_PARAMS),
        },
    }}


def x4_config(scale_factor: float) -> dict:
    """x4-upscaling.yaml at the demo's sizes (low-res 16x16 -> 64x64 in training, any size after)."""
    return {"model": {
        "base_learning_rate": 1.0e-3,
        "target": "ldm.models.diffusion.ddpm.LatentUpscaleDiffusion",
        "params": {
            "parameterization": "v", "low_scale_key": "lr", "linear_start": 0.0001, "linear_end": 0.02,
            "num_timesteps_cond": 1, "log_every_t": 200, "timesteps": 1000, "first_stage_key": "jpg",
            "cond_stage_key": "txt", "image_size": IMAGE_SIZE // 4, "channels": 4, "cond_stage_trainable": True,
            "conditioning_key": "hybrid-adm", "monitor": "val/loss_simple_ema",
            "scale_factor": round(scale_factor, 5), "use_ema": False,
            "low_scale_config": {
                "target": "ldm.modules.diffusionmodules.upscaling.ImageConcatWithNoiseAugmentation",
                "params": {"noise_schedule_config": {"linear_start": 0.0001, "linear_end": 0.02},
                           "max_noise_level": 350}},
            "unet_config": _unet(X4_UNET_PARAMS),
            "first_stage_config": _first_stage(),
            "cond_stage_config": _text(X4_TEXT_PARAMS),
        },
    }}
