"""Controls shared by the generation tabs (txt2img, img2img, depth2img), with A1111's elem_ids.

Each builder returns a small dataclass of components so tabs wire them by name, not by position.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr

RANDOM = "\U0001f3b2\ufe0f"   # 🎲️ random seed
REUSE = "\u267b\ufe0f"        # ♻️ reuse last seed
SWAP = "\u21c5"               # ⇅ swap width/height


PASTE = "\u2199\ufe0f"        # ↙️ read generation parameters from the prompt (or the last generation)
CLEAR = "\U0001f5d1\ufe0f"     # 🗑️ clear prompt
APPLY_STYLES = "\U0001f4cb"     # 📋 apply the selected styles to the prompts
EDIT_STYLES = "\U0001f58c\ufe0f"  # 🖌️ save the prompts as a style

# A1111's token counter: in the top right corner of its prompt box, beside the label, not on a line of its own
CSS = """
.prompt-box { position: relative; }
.prompt-box > .token-counter-box { position: absolute; top: 8px; right: 12px; z-index: 10; width: auto !important;
  min-width: 0 !important; border: none !important; background: none !important; box-shadow: none !important; }
.prompt-box > .token-counter-box .html-container { padding: 0 !important; font-size: 0.85em; opacity: 0.8; }
"""


@dataclass
class PromptRow:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    prompt_tokens: gr.HTML
    negative_tokens: gr.HTML
    styles: gr.Dropdown
    apply_styles: gr.Button
    style_name: gr.Textbox
    save_style: gr.Button
    generate: gr.Button
    interrupt: gr.Button
    skip: gr.Button
    paste: gr.Button
    clear: gr.Button


def prompt_row(tab: str, style_names: list[str]) -> PromptRow:
    """A1111's top row: prompt and negative prompt across the width, beside the Generate column with
    its tool buttons (read parameters, clear, apply styles, edit styles) and the styles dropdown."""
    with gr.Row(elem_id=f"{tab}_toprow", equal_height=False):
        with gr.Column(scale=6, elem_id=f"{tab}_prompt_container"):
            with gr.Column(elem_classes=["prompt-box"]):  # the counter sits in the box's corner (CSS)
                prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{tab}_prompt",
                                    placeholder="Prompt (A1111 syntax: (emphasis:1.2), [from:to:when], AND, BREAK, "
                                                "<lora:name:1>)")
                prompt_tokens = gr.HTML("0/75", elem_id=f"{tab}_token_counter", elem_classes=["token-counter-box"])
            with gr.Column(elem_classes=["prompt-box"]):
                negative = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_neg_prompt")
                negative_tokens = gr.HTML("0/75", elem_id=f"{tab}_negative_token_counter",
                                          elem_classes=["token-counter-box"])
        with gr.Column(scale=1, min_width=220, elem_id=f"{tab}_actions_column"):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", elem_id=f"{tab}_interrupt", size="sm", min_width=60)
                skip = gr.Button("Skip", elem_id=f"{tab}_skip", size="sm", min_width=60)
            with gr.Row(elem_id=f"{tab}_tools"):
                paste = gr.Button(PASTE, size="sm", min_width=36, elem_id=f"{tab}_paste",
                                  elem_classes=["tool"])
                clear = gr.Button(CLEAR, size="sm", min_width=36, elem_id=f"{tab}_clear_prompt",
                                  elem_classes=["tool"])
                apply_styles = gr.Button(APPLY_STYLES, size="sm", min_width=36, elem_id=f"{tab}_style_apply",
                                         elem_classes=["tool"])
            styles = gr.Dropdown(label="Styles", choices=style_names, multiselect=True, elem_id=f"{tab}_styles")
            with gr.Accordion(f"{EDIT_STYLES} Edit styles", open=False, elem_id=f"{tab}_styles_dialog"):
                style_name = gr.Textbox(label="New style name", lines=1, elem_id=f"{tab}_style_name")
                save_style = gr.Button("Save prompts as style", size="sm", elem_id=f"{tab}_style_create")
    return PromptRow(prompt, negative, prompt_tokens, negative_tokens, styles, apply_styles, style_name,
                     save_style, generate, interrupt, skip, paste, clear)


@dataclass
class SamplerRow:
    sampler_name: gr.Dropdown
    scheduler: gr.Dropdown
    steps: gr.Slider


def sampler_row(tab: str, samplers: list[str], schedulers: list[str]) -> SamplerRow:
    with gr.Row(elem_id=f"{tab}_sampler_row"):
        sampler = gr.Dropdown(label="Sampling method", choices=samplers, value=samplers[0] if samplers else None,
                              elem_id=f"{tab}_sampling")
        scheduler = gr.Dropdown(label="Schedule type", choices=schedulers,
                                value=schedulers[0] if schedulers else None, elem_id=f"{tab}_scheduler")
        steps = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")
    return SamplerRow(sampler, scheduler, steps)


@dataclass
class SizeRow:
    width: gr.Slider
    height: gr.Slider
    batch_count: gr.Slider
    batch_size: gr.Slider
    cfg_scale: gr.Slider


def size_row(tab: str, width: int = 512, height: int = 512) -> SizeRow:
    low = min(64, width, height)  # the demo model works at 32x32
    with gr.Row():
        with gr.Column(scale=4):
            w = gr.Slider(low, 2048, value=width, step=8, label="Width", elem_id=f"{tab}_width")
            h = gr.Slider(low, 2048, value=height, step=8, label="Height", elem_id=f"{tab}_height")
        swap = gr.Button(SWAP, elem_id=f"{tab}_res_switch_btn", size="sm", min_width=40, scale=0)
        with gr.Column(scale=2):
            batch_count = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
            batch_size = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")
    cfg = gr.Slider(1.0, 30.0, value=7.0, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")
    swap.click(lambda a, b: (b, a), inputs=[w, h], outputs=[w, h], show_progress="hidden", api_visibility="private")
    return SizeRow(w, h, batch_count, batch_size, cfg)


@dataclass
class SeedRow:
    seed: gr.Number
    subseed: gr.Number
    subseed_strength: gr.Slider
    seed_resize_from_w: gr.Slider
    seed_resize_from_h: gr.Slider
    reuse: gr.Button
    override_settings: gr.Dropdown  # A1111's "Override settings": "Clip skip: 2" entries from a pasted infotext


def seed_row(tab: str) -> SeedRow:
    with gr.Row(elem_id=f"{tab}_seed_row"):
        seed = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab}_seed", scale=4)
        random_seed = gr.Button(RANDOM, elem_id=f"{tab}_random_seed", size="sm", min_width=40, scale=0)
        reuse = gr.Button(REUSE, elem_id=f"{tab}_reuse_seed", size="sm", min_width=40, scale=0)
    with gr.Accordion("Extra (variation seed)", open=False, elem_id=f"{tab}_subseed_show"):
        with gr.Row():
            subseed = gr.Number(label="Variation seed", value=-1, precision=0, elem_id=f"{tab}_subseed")
            subseed_strength = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Variation strength",
                                         elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            resize_w = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                 elem_id=f"{tab}_seed_resize_from_w")
            resize_h = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                 elem_id=f"{tab}_seed_resize_from_h")
    # filled by pasting an infotext (PNG Info's "send to"), shown only then; the job applies these settings
    override = gr.Dropdown(label="Override settings", choices=[], value=[], multiselect=True, visible=False,
                           elem_id=f"{tab}_override_settings")
    override.change(lambda v: gr.update(visible=bool(v)), inputs=override, outputs=override,
                    show_progress="hidden", api_visibility="private", queue=False)
    random_seed.click(lambda: -1, outputs=seed, show_progress="hidden", api_visibility="private")
    return SeedRow(seed, subseed, subseed_strength, resize_w, resize_h, reuse, override)


@dataclass
class ResultPanel:
    gallery: gr.Gallery
    preview: gr.Image
    progress: gr.HTML
    info: gr.HTML
    infotext: gr.Textbox
    seeds: gr.JSON
    send_to_img2img: gr.Button
    send_to_inpaint: gr.Button
    send_to_extras: gr.Button


def result_panel(tab: str) -> ResultPanel:
    progress = gr.HTML("", elem_id=f"{tab}_progress")
    preview = gr.Image(label="Live preview", visible=False, interactive=False, elem_id=f"{tab}_preview")
    # format="png" and file paths: the PNG "parameters" chunk must survive the trip to the browser.
    gallery = gr.Gallery(label="Output", format="png", columns=4, elem_id=f"{tab}_gallery", interactive=False)
    with gr.Row():
        to_img2img = gr.Button("Send to img2img", size="sm", elem_id=f"{tab}_send_to_img2img")
        to_inpaint = gr.Button("Send to inpaint", size="sm", elem_id=f"{tab}_send_to_inpaint")
        to_extras = gr.Button("Send to extras", size="sm", elem_id=f"{tab}_send_to_extras")
    infotext = gr.Textbox(label="Generation info", lines=3, interactive=False, elem_id=f"{tab}_generation_info")
    info = gr.HTML("", elem_id=f"{tab}_html_info")
    seeds = gr.JSON(visible=False)
    return ResultPanel(gallery, preview, progress, info, infotext, seeds, to_img2img, to_inpaint, to_extras)


def reuse_seed_value(seeds: dict | None, current: float) -> int:
    """♻️: the seed of the last job (A1111 reuses the selected image's; we take the first)."""
    if isinstance(seeds, dict) and seeds.get("seed") is not None:
        return int(seeds["seed"])
    return int(current) if current not in (None, -1) else random.randrange(2**32)
