"""Prompt matrix: "a cat | in a hat | at night" makes every combination of the optional parts
(2^(n-1) images) and a grid labelled with the parts each image uses. Public extension API only."""
from __future__ import annotations

import copy
import random

import gradio as gr
from PIL import Image, ImageDraw, ImageFont

from modules import scripts
from modules.processing import Processed, process_images


def combinations(prompt: str, at_start: bool = False, separator: str = ", ") -> tuple[list[str], list[str]]:
    """-> (prompts, optional parts). Image i uses part j when bit j of i is set."""
    base, *parts = [x.strip() for x in prompt.split("|")]
    out = []
    for i in range(2 ** len(parts)):
        chosen = [part for j, part in enumerate(parts) if i >> j & 1]
        pieces = chosen + [base] if at_start else [base] + chosen
        out.append(separator.join(x for x in pieces if x))
    return out, parts


def matrix_grid(images: list[Image.Image], parts: list[str]) -> Image.Image:
    """Images in rows of 2^ceil(n/2); each captioned with its optional parts (+ used, - not)."""
    n = len(parts)
    cols = 2 ** ((n + 1) // 2)
    rows = (len(images) + cols - 1) // cols
    w, h = images[0].size
    font = ImageFont.load_default()
    caption = 12 * max(n, 1) + 4
    grid = Image.new("RGB", (cols * w, rows * (h + caption)), "white")
    draw = ImageDraw.Draw(grid)
    for i, im in enumerate(images):
        x, y = (i % cols) * w, (i // cols) * (h + caption)
        grid.paste(im, (x, y))
        for j, part in enumerate(parts):
            used = i >> j & 1
            draw.text((x + 2, y + h + 2 + 12 * j), ("+ " if used else "- ") + part,
                      fill="black" if used else "#999999", font=font)
    return grid


class Script(scripts.Script):
    def title(self):
        return "Prompt matrix"

    def ui(self, is_img2img):
        return {
            "put_at_start": gr.Checkbox(label="Put variable parts at start of prompt", value=False,
                                        elem_id=self.elem_id("put_at_start")),
            "different_seeds": gr.Checkbox(label="Use different seed for each picture", value=False,
                                           elem_id=self.elem_id("different_seeds")),
        }

    def run(self, p, put_at_start=False, different_seeds=False):
        prompt = p.prompt[0] if isinstance(p.prompt, list) else p.prompt
        if "|" not in prompt:
            raise ValueError("Prompt matrix: separate the optional parts of the prompt with |")
        prompts, parts = combinations(prompt, bool(put_at_start))
        if len(prompts) > 256:
            raise ValueError(f"Prompt matrix: {len(prompts)} images is too many; use at most 8 | parts")
        seed = int(p.seed) if int(p.seed) != -1 else random.randrange(4294967294)
        job = copy.copy(p)
        job.prompt = prompts
        if len(prompts) % p.batch_size:  # prompt lists must fill whole batches
            job.batch_size = 1
        job.n_iter = len(prompts) // job.batch_size
        job.seed = [seed + (i if different_seeds else 0) for i in range(len(prompts))]
        job.do_not_save_grid = True
        processed = process_images(job)
        cells = processed.images[processed.index_of_first_image:][:len(prompts)]
        texts = processed.infotexts[processed.index_of_first_image:][:len(prompts)]
        grid = matrix_grid(cells, parts)
        return Processed(job, [grid] + cells, seed=seed, info=texts[0], infotexts=[texts[0]] + texts,
                         all_prompts=prompts, all_seeds=job.seed, index_of_first_image=1)
