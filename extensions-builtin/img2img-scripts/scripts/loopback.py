"""Loopback (A1111's img2img script): feed each output back as the next input `loops` times, the
denoising strength moving from the request's to `final_denoising_strength` along a curve.
script_args (A1111's order): loops, final_denoising_strength, denoising_curve, append_interrogation.
"""
from __future__ import annotations

import math
from pathlib import Path

import gradio as gr
import img2img_script_tools as tools

from modules import images, interrogate, scripts
from modules.processing import Processed, process_images

CURVES = ("Aggressive", "Linear", "Lazy")


def denoising_strength(initial: float, final: float, loop: int, loops: int, curve: str) -> float:
    """Strength of loop `loop` (0-based): Aggressive rises like sin, Lazy like 1 - cos, Linear evenly."""
    if loops == 1:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        progress = math.sin(progress * math.pi * 0.5)
    elif curve == "Lazy":
        progress = 1 - math.cos(progress * math.pi * 0.5)
    return initial + (final - initial) * progress


class Script(scripts.Script):
    def title(self):
        return "Loopback"

    def show(self, is_img2img):
        return is_img2img

    def ui(self, is_img2img):
        loops = gr.Slider(minimum=1, maximum=32, step=1, label="Loops", value=4, elem_id=self.elem_id("loops"))
        final = gr.Slider(minimum=0, maximum=1, step=0.01, label="Final denoising strength", value=0.5,
                          elem_id=self.elem_id("final_denoising_strength"))
        curve = gr.Dropdown(label="Denoising strength curve", choices=list(CURVES), value="Linear")
        append = gr.Dropdown(label="Append interrogated prompt at each iteration",
                             choices=["None", "CLIP", "DeepBooru"], value="None")
        return [loops, final, curve, append]

    def run(self, p, loops=4, final_denoising_strength=0.5, denoising_curve="Linear", append_interrogation="None"):
        loops = int(loops)
        if not 1 <= loops <= 1000 or not p.init_images:
            raise ValueError("Loopback needs an init image and 1 to 1000 loops")
        if denoising_curve not in CURVES:
            raise ValueError(f"Loopback: denoising curve must be one of {', '.join(CURVES)}")
        if append_interrogation not in ("None", "CLIP"):
            raise ValueError(f"Loopback: {append_interrogation!r} interrogation is not available (None or CLIP)")
        initial = float(p.denoising_strength if p.denoising_strength is not None else 0.75)
        final = float(final_denoising_strength)
        p.extra_generation_params["Final denoising strength"] = final
        p.extra_generation_params["Denoising curve"] = denoising_curve
        seed = tools.fixed_seed(p)
        base_prompt = p.prompt
        history, infotexts, grids = [], [], []
        for n in range(max(1, int(p.n_iter))):
            inputs = list(p.init_images)
            next_seed, prompt, chain = seed + n * loops, base_prompt, []
            for loop in range(loops):
                if append_interrogation == "CLIP":
                    caption = interrogate.interrogate(Path(p.env.data_dir or ".") / "models", inputs[0])
                    prompt = f"{base_prompt}, {caption}" if base_prompt else caption
                job = tools.sub_job(p, init_images=inputs, n_iter=1, seed=next_seed, prompt=prompt,
                                    denoising_strength=denoising_strength(initial, final, loop, loops,
                                                                          denoising_curve))
                processed = process_images(job)
                images_out = processed.images[processed.index_of_first_image:]
                inputs = [images_out[0]] * len(p.init_images)
                next_seed = processed.seed + 1
                chain += images_out
                infotexts += processed.infotexts[processed.index_of_first_image:]
                for image, text in zip(images_out, processed.infotexts[processed.index_of_first_image:],
                                       strict=False):
                    tools.save_result(p, image, processed.seed, text)
            grids.append(images.image_grid(chain, rows=1))
            history += chain
        return Processed(p, grids + history, seed=seed, info=infotexts[0], index_of_first_image=len(grids),
                         infotexts=[infotexts[0]] * len(grids) + infotexts)
