"""The generation parameters of one image, in A1111's infotext order and names.

`generation_params(p, index)` gives the ordered dict; modules.infotext.create_infotext turns it into
the "parameters" text (prompt, "Negative prompt:" line, "key: value" pairs).
"""
from __future__ import annotations

from modules.processing.sample import sampler_options, token_merging_ratio
from modules.sampling import samplers

VERSION = "v1.10.1"  # A1111's version string: tools that read infotexts check it


def generation_params(p, index: int, seeds=None, subseeds=None) -> dict:
    """index: the image's position in the job (into all_prompts / all_seeds, or the lists given)."""
    env, opts = p.env, p.opts
    seeds = seeds or p.all_seeds or [p.seed]
    subseeds = subseeds or p.all_subseeds or [p.subseed]
    sampler = p.sampler
    params: dict = {
        "Steps": p.steps,
        "Sampler": sampler.name if sampler is not None else p.sampler_name,
        "Schedule type": p.scheduler_info.label if p.scheduler_info is not None else None,
        "CFG scale": p.cfg_scale,
        "Image CFG scale": getattr(p, "image_cfg_scale", None),
        "Seed": seeds[min(index, len(seeds) - 1)],
        "Face restoration": opts.face_restoration_model if p.restore_faces else None,
        "Size": f"{p.width}x{p.height}",
        "Model hash": env.model_hash,
        "Model": env.model_name,
        "VAE hash": env.vae_hash,
        "VAE": env.vae_name,
        "Variation seed": None if p.subseed_strength == 0 else subseeds[min(index, len(subseeds) - 1)],
        "Variation seed strength": None if p.subseed_strength == 0 else p.subseed_strength,
        "Seed resize from": None if p.seed_resize_from_w <= 0 or p.seed_resize_from_h <= 0
        else f"{p.seed_resize_from_w}x{p.seed_resize_from_h}",
        "Denoising strength": p.denoising_strength if (p.is_img2img or getattr(p, "enable_hr", False)) else None,
        "Clip skip": None if opts.CLIP_stop_at_last_layers <= 1 else opts.CLIP_stop_at_last_layers,
        "ENSD": opts.eta_noise_seed_delta if (opts.eta_noise_seed_delta and sampler is not None
                                              and sampler.uses_ensd) else None,
        "Token merging ratio": _nonzero(token_merging_ratio(p)),
        "Token merging ratio hr": _nonzero(token_merging_ratio(p, for_hr=True)) if getattr(p, "enable_hr", False)
        else None,
        "RNG": opts.randn_source if opts.randn_source != "GPU" else None,
        "Tiling": "True" if p.tiling else None,
    }
    if sampler is not None:
        params.update(samplers.infotext_params(sampler, sampler_options(p)))
    params.update(p.extra_generation_params)
    params["Version"] = VERSION
    return {k: v for k, v in params.items() if v is not None}



def _nonzero(value: float) -> float | None:
    return value or None
