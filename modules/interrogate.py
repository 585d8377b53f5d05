"""CLIP interrogation (A1111's "Interrogate CLIP", POST /sdapi/v1/interrogate with model "clip"):
a caption, then the best-matching lines of each category list by CLIP image-text similarity.

Nothing can be downloaded here, so the files must be put in place by hand:

    models/clip/<any name>/open_clip_config.json      the open_clip model config ("model_cfg")
    models/clip/<any name>/open_clip_model.safetensors  its weights (A1111 uses OpenAI's ViT-L/14:
                                                      e.g. the files of timm/vit_large_patch14_clip_224.openai)
    models/interrogate/<category>.txt                 one phrase per line (A1111's artists.txt,
                                                      flavors.txt, mediums.txt, movements.txt);
                                                      "<category>.top3.txt" keeps the best 3
    models/BLIP/<any name>/ (optional)                 a transformers BLIP captioning folder (config.json,
                                                      model.safetensors, tokenizer files, e.g.
                                                      Salesforce/blip-image-captioning-large); needs
                                                      the `transformers` package. Without it the caption
                                                      is only the category matches.

A missing piece raises InterrogatorMissing naming it (the API answers 400 with that text).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from PIL import Image

_TOPN = re.compile(r"\.top(\d+)$")


class InterrogatorMissing(RuntimeError):
    """A file or package interrogation needs is not installed; the message says which and where."""


def _clip_dir(models_dir: Path) -> Path:
    for folder in sorted((models_dir / "clip").glob("*")):
        if (folder / "open_clip_config.json").is_file() and (folder / "open_clip_model.safetensors").is_file():
            return folder
    raise InterrogatorMissing(
        f"CLIP interrogation needs an open_clip model: put open_clip_config.json and open_clip_model.safetensors "
        f"(e.g. from timm/vit_large_patch14_clip_224.openai, the ViT-L/14 A1111 uses) in a folder under "
        f"{models_dir / 'clip'}, and the category lists (artists.txt, flavors.txt, mediums.txt, movements.txt) "
        f"in {models_dir / 'interrogate'}")


def categories(models_dir: Path) -> list[tuple[str, int, list[str]]]:
    """(name, how many to keep, phrases) per models/interrogate/*.txt."""
    out = []
    for path in sorted((models_dir / "interrogate").glob("*.txt")):
        match = _TOPN.search(path.stem)
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        lines = [line for line in lines if line]
        if lines:
            out.append((_TOPN.sub("", path.stem), int(match.group(1)) if match else 1, lines))
    if not out:
        raise InterrogatorMissing(f"CLIP interrogation needs category lists (artists.txt, flavors.txt, "
                                  f"mediums.txt, movements.txt: one phrase per line) in {models_dir / 'interrogate'}")
    return out


def load_clip(folder: Path):
    """(model, preprocess, tokenizer) from an open_clip folder; weights read with safetensors only."""
    import open_clip
    import safetensors.torch

    config = json.loads((folder / "open_clip_config.json").read_text())
    cfg = dict(config.get("model_cfg", config))
    custom_text = cfg.pop("custom_text", False)  # text tower from a config of its own (e.g. ViT-bigG)
    model = (open_clip.CustomTextCLIP if custom_text else open_clip.CLIP)(**cfg)
    model.load_state_dict(safetensors.torch.load_file(str(folder / "open_clip_model.safetensors")))
    model.eval()
    pre = config.get("preprocess_cfg", {})
    preprocess = open_clip.image_transform(model.visual.image_size, is_train=False, mean=pre.get("mean"),
                                           std=pre.get("std"))
    return model, preprocess, open_clip.SimpleTokenizer(context_length=cfg["text_cfg"].get("context_length", 77))


@torch.no_grad()
def rank(model, tokenizer, image_features: torch.Tensor, phrases: list[str], top: int) -> list[tuple[str, float]]:
    """The `top` phrases most similar to the image (A1111: softmax of 100 x cosine similarity)."""
    text = model.encode_text(tokenizer(phrases)).float()
    text = text / text.norm(dim=-1, keepdim=True)
    probs = (100.0 * image_features @ text.T).softmax(dim=-1)[0]
    values, indices = probs.topk(min(top, len(phrases)))
    return [(phrases[i], float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


def blip_caption(models_dir: Path, image: Image.Image) -> str:
    """The BLIP caption when a transformers BLIP folder and the transformers package are there, else ''."""
    folders = [f for f in sorted((models_dir / "BLIP").glob("*")) if (f / "config.json").is_file()]
    if not folders:
        return ""
    try:
        from transformers import BlipForConditionalGeneration, BlipProcessor
    except ImportError:
        raise InterrogatorMissing(f"a BLIP model is in {folders[0]} but the transformers package is not installed: "
                                  "pip install transformers (or remove the folder for CLIP-only captions)") from None
    processor = BlipProcessor.from_pretrained(folders[0], local_files_only=True)
    blip = BlipForConditionalGeneration.from_pretrained(folders[0], local_files_only=True, use_safetensors=True)
    with torch.no_grad():
        out = blip.generate(**processor(images=image, return_tensors="pt"), num_beams=1, min_length=5,
                            max_length=30)
    return processor.decode(out[0], skip_special_tokens=True).strip()


@torch.no_grad()
def interrogate(models_dir: str | Path, image: Image.Image, model_name: str = "clip") -> str:
    if model_name != "clip":
        raise InterrogatorMissing(f"interrogation model {model_name!r} is not available: this app has 'clip' "
                                  "(DeepDanbooru is not supported)")
    models_dir = Path(models_dir)
    folder = _clip_dir(models_dir)
    lists = categories(models_dir)
    caption = blip_caption(models_dir, image.convert("RGB"))
    model, preprocess, tokenizer = load_clip(folder)
    features = model.encode_image(preprocess(image.convert("RGB")).unsqueeze(0)).float()
    features = features / features.norm(dim=-1, keepdim=True)
    parts = [caption] if caption else []
    for _name, top, phrases in lists:
        parts += [phrase for phrase, _ in rank(model, tokenizer, features, phrases, top)]
    return ", ".join(parts)
