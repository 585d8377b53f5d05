"""What each task does once its turn has come (the caller holds the model lock and the settings).

txt2img / img2img: A1111's processing objects, the dropdown script or process_images, p.close() once.
depth2img: the SD 2 depth pipeline. extras: one image through one or two upscalers.
Each returns a GenerationResult; images are saved to the outputs folders here (setting samples_save,
unless the request said do_not_save_samples), so every front end saves the same way.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from PIL import Image

from modules import images, startup
from modules.conditioning import PromptEncoder
from modules.errors import RequestError
from modules.generation.request import GenerationResult
from modules.generation.validate import Prepared
from modules.models import family as model_family
from modules.processing import depth2img as depth
from modules.processing import pipeline
from modules.processing.hybrid_sampling import SamplingSettings
from modules.processing.objects import (
    ProcessingEnv,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
)
from modules.upscalers import target_size

EXTRAS_SIZE_FACTOR = 4  # Extras results may be this many times img_max_size a side (upscaling is its job)


def processing_kwargs(cls, params: dict[str, Any]) -> dict[str, Any]:
    """The params that are fields of the processing class; None where the class has a non-None
    default means "the default" (A1111's API treats null the same way)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}

    def defaults_to_none(f) -> bool:
        return f.default is None or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return {k: v for k, v in params.items()
            if k in fields and k not in ("override_settings", "override_settings_restore_afterwards", "sd_model",
                                         "env", "scripts", "script_args")
            and (v is not None or defaults_to_none(fields[k]))}


def _is_inpainting_model(model) -> bool:
    return getattr(getattr(model, "model", None), "conditioning_key", None) in ("hybrid", "concat")


def run_processing(ctx, prepared: Prepared, job) -> GenerationResult:
    cls = StableDiffusionProcessingImg2Img if prepared.task == "img2img" else StableDiffusionProcessingTxt2Img
    loaded = startup.current_model(ctx)
    p = cls(**processing_kwargs(cls, prepared.params))
    p.sd_model = loaded.model
    p.env = ProcessingEnv.from_context(ctx, job=job)
    try:
        processed = None
        runner = prepared.scripts.runner
        if runner is not None:  # A1111's order: the hooks' runner on p, then its run (a dropdown script, or None)
            p.scripts, p.script_args = runner, list(prepared.scripts.script_args)
            processed = runner.run(p, *p.script_args)
        if processed is None:
            processed = pipeline.process_images(p)
    finally:
        p.close()
    return GenerationResult.from_processed(processed, interrupted=bool(job is not None and job.interrupted),
                                           is_using_inpainting_conditioning=_is_inpainting_model(loaded.model))


def _save(ctx, params: dict, result_images: list, texts: list, outdir_key: str, seed=None) -> None:
    if params.get("do_not_save_samples") or not ctx.opts.samples_save:
        return
    folder = images.output_dir(ctx.opts, outdir_key, ctx.paths.data_dir)
    for image, text in zip(result_images, texts, strict=True):
        images.save_image(image, folder, seed=seed, info=text, opts=ctx.opts, callbacks=ctx.services.callbacks)


def depth_model(ctx):
    """The loaded checkpoint when it is a depth model, else the catalog's depth checkpoint kept beside it
    (services.depth: a user's before the shipped demo); with none, the error names what is loaded."""
    current = ctx.models.current
    if current is not None and depth.is_depth_model(current.model):
        return current.model
    side = ctx.services.depth
    if side is not None and side.checkpoint() is not None:
        return side.model()
    loaded = startup.current_model(ctx)
    if not depth.is_depth_model(loaded.model):  # before a prompt encoder is made for a model of another family
        raise RequestError(depth.NOT_A_DEPTH_MODEL.format(title=model_family.of_model(loaded.model).title))
    return loaded.model


def run_depth2img(ctx, prepared: Prepared, job) -> GenerationResult:
    params = prepared.params
    settings = SamplingSettings(prompt=params.get("prompt") or "", negative_prompt=params.get("negative_prompt") or "",
                                steps=int(params.get("steps") or 20), cfg_scale=float(params.get("cfg_scale", 7.0)),
                                sampler_name=params["sampler_name"], scheduler=params["scheduler"],
                                seed=int(params.get("seed", -1)), eta=params.get("eta"), opts=ctx.opts)
    request = depth.Depth2ImgRequest(image=params["image"], settings=settings,
                                     denoising_strength=float(params.get("denoising_strength", 0.75)),
                                     width=params.get("width"), height=params.get("height"),
                                     depth_map=params.get("depth_map"), batch_size=int(params.get("batch_size") or 1))
    if job is not None:
        job.job_count, job.sampling_steps = 1, settings.steps
    model = depth_model(ctx)
    encoder = PromptEncoder(model, ctx.opts, embeddings=ctx.services.embeddings)
    encoder.interrupt = job
    out = depth.depth2img(model, request, encoder=encoder, interrupt=job)
    _save(ctx, params, out.images, out.infotexts, "outdir_img2img_samples", out.seed)
    seeds = [out.seed + i for i in range(len(out.images))]
    info = {"seed": out.seed, "all_seeds": seeds, "infotexts": out.infotexts, "depth_map": out.params.get("Depth map")}
    return GenerationResult(images=out.images, infotexts=out.infotexts, info=json.dumps(info), seed=out.seed,
                            all_seeds=seeds,
                            extra_images={"depth": out.depth_image},
                            interrupted=bool(job is not None and job.interrupted))


def _extras_size(ctx, params: dict, image: Image.Image) -> tuple[int, int]:
    if params.get("resize_mode") == 1:
        width, height = int(params.get("upscaling_resize_w", 512)), int(params.get("upscaling_resize_h", 512))
    else:
        width, height = target_size(image.width, image.height, float(params.get("upscaling_resize", 2.0)))
    limit = int(ctx.opts.img_max_size) * EXTRAS_SIZE_FACTOR
    if max(width, height) > limit:
        field = "upscaling_resize_w" if params.get("resize_mode") == 1 else "upscaling_resize"
        raise RequestError(f"the result would be {width}x{height} pixels; sides must be at most {limit} "
                           f"({EXTRAS_SIZE_FACTOR} x the img_max_size setting)", field)
    return width, height


def _upscale(ctx, name: str, image: Image.Image, width: int, height: int, crop: bool, prompt: str) -> Image.Image:
    """Upscale with `name` to cover (width, height) keeping the aspect ratio, then centre-crop when
    asked (A1111's "crop to fit"); without crop the image is stretched to the size."""
    if crop:
        scale = max(width / image.width, height / image.height)
        cover = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    else:
        cover = (width, height)
    kwargs = {"prompt": prompt} if name == "SD x4" else {}
    result = ctx.services.upscalers.upscale(image, name, cover[0], cover[1], **kwargs)
    if crop and result.size != (width, height):
        left, top = (result.width - width) // 2, (result.height - height) // 2
        result = result.crop((left, top, left + width, top + height))
    return result


def _extras_faces(ctx, params: dict, image: Image.Image, info: dict) -> Image.Image:
    """GFPGAN then CodeFormer after the upscale (A1111's postprocessing order), each blended over the
    image by its visibility; CodeFormer at codeformer_weight (0 = strongest)."""
    service = ctx.services.face_restorers
    gfpgan = float(params.get("gfpgan_visibility") or 0.0)
    if gfpgan > 0:
        image = Image.blend(image, service.restore(image, "GFPGAN"), gfpgan)
        info["GFPGAN visibility"] = round(gfpgan, 3)
    codeformer = float(params.get("codeformer_visibility") or 0.0)
    if codeformer > 0:
        weight = float(params.get("codeformer_weight") or 0.0)
        image = Image.blend(image, service.restore(image, "CodeFormer", weight), codeformer)
        info["CodeFormer visibility"], info["CodeFormer weight"] = round(codeformer, 3), round(weight, 3)
    return image


def run_extras(ctx, prepared: Prepared, job) -> GenerationResult:
    params = prepared.params
    image = params["image"]
    geninfo = image.info.get("parameters")
    image = image.convert("RGB")
    width, height = _extras_size(ctx, params, image)
    crop = params.get("resize_mode") == 1 and params.get("upscaling_crop", True)
    first, second = params.get("upscaler_1", "None"), params.get("upscaler_2", "None")
    prompt = params.get("prompt") or ""
    info: dict[str, Any] = {}
    if first != "None":
        result = _upscale(ctx, first, image, width, height, crop, prompt)
        visibility = float(params.get("extras_upscaler_2_visibility", 0.0))
        if second != "None" and visibility > 0:
            result = Image.blend(result, _upscale(ctx, second, image, width, height, crop, prompt), visibility)
            info["Postprocess upscaler 2"] = second
        info["Postprocess upscale to" if params.get("resize_mode") == 1 else "Postprocess upscale by"] = (
            f"{width}x{height}" if params.get("resize_mode") == 1 else params.get("upscaling_resize", 2.0))
        info["Postprocess upscaler"] = first
        image = result
    image = _extras_faces(ctx, params, image, info)
    text = ", ".join(f"{k}: {v}" for k, v in info.items())  # appended to the image's own parameters
    full = "\n".join(t for t in (geninfo, text) if t)
    _save(ctx, params, [image], [full], "outdir_extras_samples")
    return GenerationResult(images=[image], infotexts=[full], comments=text,
                            interrupted=bool(job is not None and job.interrupted))


RUNNERS = {"txt2img": run_processing, "img2img": run_processing, "depth2img": run_depth2img, "extras": run_extras}
