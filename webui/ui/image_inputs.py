"""Turning img2img's inputs (image, sketch, drawn or uploaded mask, batch folder) into init images
and a mask, with clear messages for what is missing (sizes are the engine's to check)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from modules.context import AppContext
from webui.ui import tab_common

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def editor_mask(value: dict) -> Image.Image | None:
    """The drawn layers' alpha, as a white-on-black mask the size of the background."""
    layers = [layer for layer in (value or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    mask = Image.new("L", layers[0].size, 0)
    for layer in layers:
        alpha = layer.convert("RGBA").getchannel("A")
        mask.paste(255, (0, 0), alpha.point(lambda a: 255 if a > 0 else 0))
    return mask if mask.getbbox() else None


def init_and_mask(src: dict) -> tuple[list[Image.Image], Image.Image | None]:
    mode = src["mode"]
    if mode == "img2img":
        image, mask = src["init_img"], None
    elif mode == "sketch":
        value = src["sketch"] or {}
        image, mask = value.get("composite"), None
    elif mode == "inpaint":
        value = src["inpaint"] or {}
        image, mask = value.get("background"), editor_mask(value)
        if image is not None and mask is None:
            raise gr.Error("Draw a mask over the part of the image to repaint (brush tool), then Generate")
    else:  # inpaint upload
        image, mask = src["upload_img"], src["upload_mask"]
        if image is not None and mask is None:
            raise gr.Error("Upload a mask image too (white = the part to repaint)")
    if image is None:
        raise gr.Error(f"Upload an image in the {mode} tab first")
    return [image], mask


def folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def run_batch(ctx: AppContext, ui, request: dict, src: dict, script_values: list, result, t0):
    """Batch: every image of the input folder with the same settings (A1111's img2img batch)."""
    if not ctx.localhost_only:
        raise gr.Error("Batch folders are disabled when the server listens beyond localhost")
    folder = Path(src["batch_in"] or "").expanduser()
    if not src["batch_in"] or not folder.is_dir():
        raise gr.Error(f"Input directory {src['batch_in']!r} does not exist")
    files = folder_images(folder)
    if not files:
        raise gr.Error(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    masks = Path(src["batch_mask"]).expanduser() if src["batch_mask"] else None
    out = src["batch_out"] or None
    last = None
    for path in files:
        try:
            image = Image.open(path)
            image.load()
        except OSError as e:
            gr.Warning(f"Skipped {path.name}: not a readable image ({e})")
            continue
        req = dict(request, init_images=[image], image_mask=None)
        if masks is not None and (masks / path.name).exists():
            req["image_mask"] = Image.open(masks / path.name).convert("L")
        if out:
            req["outpath_samples"] = out
        for update in tab_common.generate(ctx, ui, "img2img", req, script_values, result, t0):
            last = update
            yield update
    if last is None:
        raise gr.Error("No image in the folder could be read")
