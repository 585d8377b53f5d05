"""A1111's infotext: the generation parameters as text (PNG "parameters" chunk, JPEG/WEBP EXIF).

    {prompt}
    Negative prompt: {negative prompt}          (omitted when empty)
    Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, ...

Values containing "," ":" or a newline are JSON-quoted. Reading back: the last line is the params
line if at least 3 `key: value` pairs match; "Size: WxH"-style values become "Size-1"/"Size-2".
Parsed values are strings (as in A1111); `to_request` converts them to typed request fields.
"""
from __future__ import annotations

import json
import re

from modules.sampling.schedules import SCHEDULERS

# A1111 v1.10's create_infotext order; keys not listed (extra parameters) go after "Tiling" in the
# order given, and these trailing ones last.
KEY_ORDER = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration",
    "Size", "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE",
    "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr",
    "Init image hash", "RNG", "Tiling",
)
TRAILING_KEYS = ("Version", "User")

RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
RE_IMAGESIZE = re.compile(r"^(\d+)x(\d+)$")

# What A1111 assumes when a key is missing from an infotext (so pasting resets those fields).
DEFAULTS = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
}


def quote(value) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def ordered(params: dict) -> dict:
    """params in A1111's key order (see KEY_ORDER); None values dropped."""
    known = {k: params[k] for k in KEY_ORDER if k in params}
    extra = {k: v for k, v in params.items() if k not in known and k not in TRAILING_KEYS}
    trailing = {k: params[k] for k in TRAILING_KEYS if k in params}
    return {k: v for k, v in {**known, **extra, **trailing}.items() if v is not None}


def create_infotext(prompt: str, negative_prompt: str, params: dict) -> str:
    """The infotext for one image. params: infotext key -> value (None values are left out; a value
    equal to its key is written alone, as A1111 does for flags)."""
    pairs = ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in ordered(params).items())
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{pairs}".strip()


def _split_schedule(res: dict) -> None:
    """Old infotexts write "Sampler: DPM++ 2M Karras": split off the schedule type."""
    sampler = res.get("Sampler")
    if not sampler:
        return
    for scheduler in SCHEDULERS[1:]:
        for label in (scheduler.label, *scheduler.aliases):
            if sampler.endswith(" " + label):
                res["Sampler"] = sampler[: -len(label) - 1]
                res["Schedule type"] = scheduler.label
                return


def parse_generation_parameters(text: str, defaults: bool = True) -> dict:
    """Infotext -> dict with "Prompt", "Negative prompt" and every `key: value` pair (strings).

    With defaults, keys A1111 fills in when absent are added (see DEFAULTS)."""
    res: dict = {}
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    *lines, lastline = (text or "").strip().split("\n")
    if len(RE_PARAM.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    done_with_prompt = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if done_with_prompt else prompt_lines).append(line)
    for key, value in RE_PARAM.findall(lastline):
        value = unquote(value)
        size = RE_IMAGESIZE.match(value)
        if size is not None:
            res[f"{key}-1"], res[f"{key}-2"] = size.group(1), size.group(2)
        else:
            res[key] = value
    res["Prompt"] = "\n".join(prompt_lines)
    res["Negative prompt"] = "\n".join(negative_lines)
    if defaults:
        for key, value in DEFAULTS.items():
            res.setdefault(key, value)
    if res.get("Schedule type", "Automatic") == "Automatic":
        _split_schedule(res)
    return res


# --- infotext -> request fields ("send to txt2img", PNG info, the API) ---------------------------------

def _bool(v) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


# infotext key -> (request field, converter); request fields are A1111's API names
REQUEST_FIELDS = {
    "Prompt": ("prompt", str),
    "Negative prompt": ("negative_prompt", str),
    "Steps": ("steps", int),
    "Sampler": ("sampler_name", str),
    "Schedule type": ("scheduler", str),
    "CFG scale": ("cfg_scale", float),
    "Image CFG scale": ("image_cfg_scale", float),
    "Seed": ("seed", int),
    "Size-1": ("width", int),
    "Size-2": ("height", int),
    "Batch size": ("batch_size", int),
    "Variation seed": ("subseed", int),
    "Variation seed strength": ("subseed_strength", float),
    "Seed resize from-1": ("seed_resize_from_w", int),
    "Seed resize from-2": ("seed_resize_from_h", int),
    "Denoising strength": ("denoising_strength", float),
    "Face restoration": ("restore_faces", lambda v: bool(v)),
    "Tiling": ("tiling", _bool),
    "Eta": ("eta", float),
    "Sigma churn": ("s_churn", float),
    "Sigma tmin": ("s_tmin", float),
    "Sigma tmax": ("s_tmax", float),
    "Sigma noise": ("s_noise", float),
    "Hires upscale": ("hr_scale", float),
    "Hires steps": ("hr_second_pass_steps", int),
    "Hires upscaler": ("hr_upscaler", str),
    "Hires resize-1": ("hr_resize_x", int),
    "Hires resize-2": ("hr_resize_y", int),
    "Hires sampler": ("hr_sampler_name", lambda v: None if v == "Use same sampler" else v),
    "Hires schedule type": ("hr_scheduler", lambda v: None if v == "Use same scheduler" else v),
    "Hires prompt": ("hr_prompt", str),
    "Hires negative prompt": ("hr_negative_prompt", str),
    "Mask blur": ("mask_blur", int),
    "Masked area padding": ("inpaint_full_res_padding", int),
    "Masked content": ("inpainting_fill", lambda v: ["fill", "original", "latent noise", "latent nothing"].index(v)),
    "Inpaint area": ("inpaint_full_res", lambda v: v == "Only masked"),
    "Mask mode": ("inpainting_mask_invert", lambda v: 0 if v == "Inpaint masked" else 1),
}

# infotext key -> settings key (A1111's infotext_to_setting_name_mapping; go to override_settings)
OPTION_FIELDS = {
    "Clip skip": ("CLIP_stop_at_last_layers", int),
    "ENSD": ("eta_noise_seed_delta", int),
    "RNG": ("randn_source", str),
    "Eta DDIM": ("eta_ddim", float),
    "Emphasis": ("emphasis", str),
    "VAE": ("sd_vae", str),
    "Model hash": ("sd_model_checkpoint", str),
    "Schedule rho": ("rho", float),
    "Beta schedule alpha": ("beta_dist_alpha", float),
    "Beta schedule beta": ("beta_dist_beta", float),
    "Discard penultimate sigma": ("always_discard_next_to_last_sigma", lambda v: str(v).lower() == "true"),
}


def to_request(params: dict) -> tuple[dict, dict]:
    """Parsed infotext -> (request fields, override_settings); values that do not convert are skipped
    rather than failing the whole paste."""
    fields, settings = {}, {}
    for table, out in ((REQUEST_FIELDS, fields), (OPTION_FIELDS, settings)):
        for key, (name, convert) in table.items():
            if key not in params:
                continue
            try:
                value = convert(params[key])
            except (TypeError, ValueError):
                continue
            if value is not None:
                out[name] = value
    # A1111's paste rule for the hires checkbox: "Hires resize-1" is among the DEFAULTS of every parsed
    # infotext, so only one with a denoising strength (which hires fix writes) turns it on
    hires = "Hires upscale" in params or "Hires resize-1" in params or "Hires upscaler" in params
    if hires and "Denoising strength" in params:
        fields["enable_hr"] = True
    return fields, settings


def setting_texts(params: dict, settings: dict) -> list[str]:
    """The "Override settings" entries of the web UI for settings taken from an infotext: the
    infotext's own "Key: value" text of each (A1111 shows them that way)."""
    return [f"{key}: {params[key]}" for key, (name, _) in OPTION_FIELDS.items() if name in settings and key in params]


def override_settings_from_texts(texts: list[str]) -> dict:
    """"Key: value" entries (as setting_texts makes them) -> override_settings."""
    params = {}
    for text in texts or []:
        key, sep, value = str(text).partition(": ")
        if sep:
            params[key] = value
    return to_request(params)[1]
