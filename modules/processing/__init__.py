"""Generation pipelines: a request (A1111's `p` object) -> images, and A1111's `modules.processing`.

The package's modules: objects (the request/result classes and ProcessingEnv), pipeline
(process_images: the batch loop and its script hook points), prompts, sample (one sampler pass),
txt2img (+ hires), img2img (+ inpaint), vae, infotext, and the SD 2 pipelines that share a sampler
loop of their own: hybrid_sampling, depth2img, upscaler_x4.

This file is A1111's module path for extensions (`from modules.processing import process_images,
StableDiffusionProcessingTxt2Img, Processed, ...`): it only re-exports (A1111's get_fixed_seed,
create_random_tensors, opt_C and opt_f from modules/plugins/compat/processing.py). Code inside the
project imports the submodules.
"""
from modules.plugins.compat.processing import create_random_tensors, get_fixed_seed, opt_C, opt_f
from modules.processing.inpaint import apply_overlay
from modules.processing.objects import (
    ImageSaveParams,
    PostprocessImageArgs,
    Processed,
    ProcessingCallbacks,
    ProcessingEnv,
    StableDiffusionProcessing,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
)
from modules.processing.pipeline import create_infotext, fix_seed, process_images
from modules.sampling.rng import slerp

__all__ = [
    "ImageSaveParams", "PostprocessImageArgs", "Processed", "ProcessingCallbacks", "ProcessingEnv",
    "StableDiffusionProcessing", "StableDiffusionProcessingImg2Img", "StableDiffusionProcessingTxt2Img",
    "apply_overlay", "create_infotext", "create_random_tensors", "fix_seed", "get_fixed_seed", "opt_C", "opt_f",
    "process_images", "slerp",
]
