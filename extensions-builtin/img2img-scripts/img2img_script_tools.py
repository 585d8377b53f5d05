"""Helpers the built-in img2img scripts share (public extension API only)."""
from __future__ import annotations

import copy
import random

from modules import images


def fixed_seed(p) -> int:
    """The job's seed, a random one for -1 (A1111's processing.fix_seed)."""
    seed = p.seed[0] if isinstance(p.seed, list) else p.seed
    return int(seed) if seed is not None and int(seed) != -1 else random.randrange(4294967294)


def sub_job(p, **changes):
    """A copy of p for one process_images call (p itself is left as the request made it)."""
    job = copy.copy(p)
    job.extra_generation_params = dict(p.extra_generation_params)
    job.do_not_save_samples = True
    job.do_not_save_grid = True
    for key, value in changes.items():
        setattr(job, key, value)
    return job


def save_result(p, image, seed, info) -> None:
    """Save a script's final picture like a generated one (not when the request asked for no saving)."""
    opts = p.opts
    if p.do_not_save_samples or not getattr(opts, "samples_save", True):
        return
    folder = p.outpath_samples or images.output_dir(opts, "outdir_img2img_samples", p.env.data_dir)
    images.save_image(image, folder, "", seed, p.prompt if isinstance(p.prompt, str) else p.prompt[0],
                      info=info, p=p, opts=opts)


def upscaler_index(upscalers, value) -> int:
    """A1111's radio gives an index; API clients send an index or the name."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        names = [u.name.lower() for u in upscalers]
        if value.lower() not in names:
            raise ValueError(f"unknown upscaler {value!r}: use one of {', '.join(u.name for u in upscalers)}")
        return names.index(value.lower())
    index = int(value)
    if not 0 <= index < len(upscalers):
        raise ValueError(f"upscaler index {index} is out of range 0..{len(upscalers) - 1}")
    return index
