"""Prompts from file or textbox: one job per line. A line is a prompt, or A1111's command-line style
`--prompt "a cat" --negative_prompt "blurry" --steps 20 --seed 5 --cfg_scale 7 --width 512 ...`.
Public extension API only."""
from __future__ import annotations

import copy
import random
import shlex

import gradio as gr

from modules import scripts
from modules.processing import Processed, process_images

# option -> (attribute, type); A1111's list of what a line may set
FIELDS = {
    "prompt": str, "negative_prompt": str, "styles": list, "seed": int, "subseed": int,
    "subseed_strength": float, "sampler_name": str, "scheduler": str, "batch_size": int, "n_iter": int,
    "steps": int, "cfg_scale": float, "width": int, "height": int, "denoising_strength": float,
    "seed_resize_from_h": int, "seed_resize_from_w": int, "outpath_samples": None, "outpath_grids": None,
    "restore_faces": bool, "tiling": bool, "do_not_save_samples": bool, "do_not_save_grid": bool,
}


def parse_line(line: str) -> dict:
    """'a cat' -> {'prompt': 'a cat'}; '--steps 5 --prompt "x y"' -> {'steps': 5, 'prompt': 'x y'}."""
    if not line.lstrip().startswith("--"):
        return {"prompt": line.strip()}
    try:
        tokens = shlex.split(line)
    except ValueError as e:
        raise ValueError(f"line {line!r}: {e}") from None
    out, i = {}, 0
    while i < len(tokens):
        key = tokens[i][2:] if tokens[i].startswith("--") else None
        if key not in FIELDS or FIELDS[key] is None:
            raise ValueError(f"line {line!r}: unknown option {tokens[i]!r}; use one of "
                             + ", ".join(f"--{k}" for k, t in FIELDS.items() if t is not None))
        kind, i = FIELDS[key], i + 1
        values = []
        while i < len(tokens) and not tokens[i].startswith("--"):
            values.append(tokens[i])
            i += 1
        if kind is bool:
            out[key] = not values or values[0].lower() in ("true", "1", "yes")
        elif kind is list:
            out[key] = values
        elif not values:
            raise ValueError(f"line {line!r}: --{key} needs a value")
        else:
            text = " ".join(values)
            try:
                out[key] = kind(text)
            except ValueError:
                raise ValueError(f"line {line!r}: --{key} {text!r} is not a {kind.__name__}") from None
    return out


class Script(scripts.Script):
    def title(self):
        return "Prompts from file or textbox"

    def ui(self, is_img2img):
        return {
            "checkbox_iterate": gr.Checkbox(label="Iterate seed every line", value=False,
                                            elem_id=self.elem_id("checkbox_iterate")),
            "checkbox_iterate_batch": gr.Checkbox(label="Use same random seed for all lines", value=False,
                                                  elem_id=self.elem_id("checkbox_iterate_batch")),
            "prompt_txt": gr.Textbox(label="List of prompt inputs", lines=3, elem_id=self.elem_id("prompt_txt")),
            "prompt_file": gr.File(label="Upload prompt inputs", type="binary", elem_id=self.elem_id("file")),
        }

    def run(self, p, checkbox_iterate=False, checkbox_iterate_batch=False, prompt_txt="", prompt_file=None):
        text = prompt_file.decode("utf-8", errors="replace") if isinstance(prompt_file, bytes) else (prompt_txt or "")
        jobs = [parse_line(line) for line in text.splitlines() if line.strip()]
        if not jobs:
            raise ValueError("Prompts from file or textbox: no prompts given (one per line)")
        seed = int(p.seed)
        if (checkbox_iterate or checkbox_iterate_batch) and seed == -1:
            seed = random.randrange(4294967294)
        images, infotexts, prompts, seeds = [], [], [], []
        for n, args in enumerate(jobs):
            if p.job is not None and p.job.interrupted:
                break
            job = copy.copy(p)
            job.extra_generation_params = dict(p.extra_generation_params)
            job.seed = seed + (n if checkbox_iterate else 0) if (checkbox_iterate or checkbox_iterate_batch) else seed
            for key, value in args.items():
                setattr(job, key, value)
            processed = process_images(job)
            first = processed.index_of_first_image
            images += processed.images[first:]
            infotexts += processed.infotexts[first:]
            prompts += processed.all_prompts
            seeds += processed.all_seeds
        return Processed(p, images, seed=seeds[0], info=infotexts[0], infotexts=infotexts, all_prompts=prompts,
                         all_seeds=seeds)
