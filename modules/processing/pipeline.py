"""process_images(p): a request (StableDiffusionProcessingTxt2Img / Img2Img) -> Processed.

The loop of A1111's process_images, with its hook points for scripts: for each of n_iter batches,
prompts -> conditioning -> noise -> sampler -> VAE decode -> postprocess -> infotext -> save. What
the job needs is on `p.env` (processing.objects.ProcessingEnv); nothing is global, so two jobs with
different settings never leak into each other.

Pieces (this package): objects (request/result), prompts, sample (one pass), txt2img (+ hires
fix), img2img (+ inpaint), vae.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from modules import images, infotext
from modules.devices import OutOfMemory, free_memory
from modules.processing import vae
from modules.processing.img2img import init_img2img, sample_img2img
from modules.processing.infotext import generation_params
from modules.processing.inpaint import apply_overlay
from modules.processing.objects import PostprocessImageArgs, Processed, StableDiffusionProcessing
from modules.processing.prompts import (
    CondCache,
    activate_extra_networks,
    get_conds,
    make_encoder,
    note_extra_params,
    setup_prompts,
)
from modules.processing.sample import cond_schedule_steps, steps_to_run
from modules.processing.txt2img import hr_steps, init_txt2img, sample_txt2img
from modules.sampling import rng, samplers

log = logging.getLogger(__name__)


def _call_script(p, name: str, *args, **kwargs) -> None:
    """Call a script hook point if p.scripts has it (the extensions helper's runner isolates errors)."""
    fn = getattr(p.scripts, name, None) if p.scripts is not None else None
    if fn is not None:
        fn(p, *args, **kwargs)


def _no_model_error(p) -> ValueError:
    dirs = ", ".join(str(d) for d in p.env.checkpoint_dirs) or "models/Stable-diffusion"
    return ValueError(f"no Stable Diffusion model is loaded: put a checkpoint (.safetensors or .ckpt) into {dirs}, "
                      "then pick it in the checkpoint dropdown (or POST /sdapi/v1/refresh-checkpoints)")


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run the job described by p (A1111's entry point; extensions call it too)."""
    if p.env is None:
        raise ValueError("the processing object has no env: build it with ProcessingEnv(opts=..., job=...)")
    if p.sd_model is None:
        raise _no_model_error(p)
    _call_script(p, "before_process")
    with p.env.opts.override(dict(p.override_settings), restore=p.override_settings_restore_afterwards):
        try:
            return _process_images_inner(p)
        except torch.OutOfMemoryError as e:
            free_memory()
            raise OutOfMemory(
                f"out of memory generating {p.width}x{p.height} (batch size {p.batch_size}): try a smaller size or "
                "batch size, enable 'Tiled VAE', or start with --medvram / --lowvram "
                f"({str(e).splitlines()[0] if str(e) else 'OutOfMemoryError'})") from e


def _check_request(p) -> None:
    """Validate sizes and counts; round the size down to whole latent cells (warning in the info)."""
    f = p.sd_model.vae_scale_factor
    for name in ("steps", "batch_size", "n_iter"):
        if int(getattr(p, name)) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(p, name)}")
    if p.width < f or p.height < f:
        raise ValueError(f"size {p.width}x{p.height} is too small: width and height must be at least {f}")
    p.check_size(p.width, p.height)
    w, h = p.width // f * f, p.height // f * f
    if (w, h) != (p.width, p.height):
        p.add_warning(f"size {p.width}x{p.height} is not a multiple of {f}: rounded down to {w}x{h}")
        p.width, p.height = w, h
    if p.is_img2img and not 0.0 <= float(p.denoising_strength or 0.0) <= 1.0:
        raise ValueError(f"denoising strength must be between 0 and 1, got {p.denoising_strength}")


def _setup_seeds(p) -> None:
    """A1111: image i gets seed + i; with a variation strength all share the seed, subseed + i varies."""
    n = len(p.all_prompts)
    if isinstance(p.seed, (list, tuple)):
        p.all_seeds = [int(s) for s in p.seed]
    else:
        seed = rng.fix_seed(p.seed)
        p.all_seeds = [seed + (i if p.subseed_strength == 0 else 0) for i in range(n)]
    if isinstance(p.subseed, (list, tuple)):
        p.all_subseeds = [int(s) for s in p.subseed]
    else:
        subseed = rng.fix_seed(p.subseed)
        p.all_subseeds = [subseed + i for i in range(n)]
    p.seed, p.subseed = p.all_seeds[0], p.all_subseeds[0]


def _previewer(p):
    """Latent -> PIL image for the live preview: approx (cheap) or the full VAE ('Full' option)."""
    opts = p.opts
    if not opts.live_previews_enable or p.job is None:
        return None
    if opts.show_progress_type == "Full":
        return lambda latent: vae.tensor_to_pil(vae.decode(p.sd_model, latent, check_nans=False))[0]
    return lambda latent: images.approx_latent_preview(latent, p.sd_model)


def _steps_per_image(p) -> int:
    steps = steps_to_run(p, p.steps, p.denoising_strength, p.is_img2img)
    if getattr(p, "enable_hr", False):
        steps += steps_to_run(p, hr_steps(p), p.denoising_strength, True)
    return steps


def _process_images_inner(p) -> Processed:
    _check_request(p)
    if p.restore_faces is None:  # A1111: the request did not say, the setting decides
        p.restore_faces = bool(p.opts.face_restoration)
    p.sampler, p.scheduler_info = samplers.resolve_sampler_and_scheduler(p.sampler_name, p.scheduler)
    p.sampler_name, p.scheduler = p.sampler.name, p.scheduler_info.label
    setup_prompts(p)
    _setup_seeds(p)
    job = p.job
    if job is not None:
        job.job_count = p.n_iter
        p.job_timestamp = job.job_timestamp
    if p.is_img2img:
        init_img2img(p)
    else:
        init_txt2img(p)
    _call_script(p, "process")

    encoder, cache, hr_cache = make_encoder(p), CondCache(), CondCache()
    output_images, infotexts = [], []
    bs = p.batch_size
    for n in range(p.n_iter):
        if job is not None and job.interrupted:
            break
        p.iteration = n
        sl = slice(n * bs, (n + 1) * bs)
        p.prompts, p.negative_prompts = p.all_prompts[sl], p.all_negative_prompts[sl]
        p.seeds, p.subseeds = p.all_seeds[sl], p.all_subseeds[sl]
        _call_script(p, "before_process_batch", batch_number=n, prompts=p.prompts, seeds=p.seeds,
                     subseeds=p.subseeds)
        if job is not None:
            job.begin_image(n, _steps_per_image(p))
            job.textinfo = f"Batch {n + 1} out of {p.n_iter}"
        images = _run_batch(p, n, encoder, cache, hr_cache)
        _call_script(p, "postprocess_batch", images, batch_number=n)
        for i, image in enumerate(_finish_images(p, images)):
            index = n * bs + i
            p.batch_index = i
            text = create_infotext(p, index=index)
            _maybe_save(p, image, index, text)
            output_images.append(image)
            infotexts.append(text)
        del images
    return _make_result(p, output_images, infotexts)


def _run_batch(p, n: int, encoder, cache: CondCache, hr_cache: CondCache) -> torch.Tensor:
    """Sample and decode one batch -> images [B, 3, H, W] in [-1, 1]."""
    prompts, networks = activate_extra_networks(p, p.prompts)
    _call_script(p, "process_batch", batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
    previewer = _previewer(p)
    with networks as report:
        note_extra_params(p, report)
        cond, uncond = get_conds(p, encoder, cache, prompts, p.negative_prompts,
                                 cond_schedule_steps(p.sampler, p.steps))
        if p.is_img2img:
            samples = sample_img2img(p, cond, uncond, p.seeds, p.subseeds, previewer)
        else:
            sl = slice(n * p.batch_size, (n + 1) * p.batch_size)

            def hr_conds(sampler):
                hr_prompts, _ = activate_extra_networks(p, p.all_hr_prompts[sl])
                return get_conds(p, encoder, hr_cache, hr_prompts, p.all_hr_negative_prompts[sl],
                                 cond_schedule_steps(sampler, p.steps), cond_schedule_steps(sampler, hr_steps(p)))

            samples = sample_txt2img(p, cond, uncond, p.seeds, p.subseeds, previewer, hr_conds)
        note_extra_params(p, encoder)
        return vae.decode(p.sd_model, samples, bool(p.opts.sd_vae_tiled))


def _finish_images(p, images: torch.Tensor) -> list:
    """Tensor -> PIL, face restoration, scripts' postprocess_image, inpainting overlay (original pixels
    outside the mask): A1111's order."""
    out = []
    for i, image in enumerate(vae.tensor_to_pil(images)):
        p.batch_index = i
        if p.restore_faces:
            image = _restore_faces(p, image)
        pp = PostprocessImageArgs(image)
        _call_script(p, "postprocess_image", pp)
        image = pp.image
        overlays = getattr(p, "overlay_images", None)
        if overlays:
            image = apply_overlay(image, getattr(p, "paste_to", None), overlays[i % len(overlays)])
        out.append(image)
    return out


def _restore_faces(p, image):
    restorer = p.env.face_restorer
    if restorer is None:
        raise ValueError("face restoration is not available here: no face restorer is attached")
    if p.job is not None:
        p.job.textinfo = "Restoring faces"
    return restorer.restore(image)


def create_infotext(p, all_prompts=None, all_seeds=None, all_subseeds=None, comments=None, iteration: int = 0,
                    position_in_batch: int = 0, use_main_prompt: bool = False, index: int | None = None,
                    all_negative_prompts=None) -> str:
    """The PNG "parameters" text of one image: A1111's signature (extensions call it), or simply
    create_infotext(p, index=i) for image i of the job."""
    if isinstance(all_prompts, int) and index is None:  # create_infotext(p, i)
        index, all_prompts = all_prompts, None
    if index is None:
        index = position_in_batch + iteration * p.batch_size
    prompts = all_prompts or p.all_prompts or [p.prompt]
    negatives = all_negative_prompts or p.all_negative_prompts or [p.negative_prompt]
    params = generation_params(p, index, seeds=all_seeds, subseeds=all_subseeds)
    prompt = p.prompt if use_main_prompt else prompts[min(index, len(prompts) - 1)]
    return infotext.create_infotext(str(prompt), str(negatives[min(index, len(negatives) - 1)]), params)


def fix_seed(p) -> None:
    """A1111's processing.fix_seed: replace -1 seeds by random ones (scripts call it before copying p)."""
    p.seed = rng.fix_seed(p.seed) if not isinstance(p.seed, (list, tuple)) else p.seed
    p.subseed = rng.fix_seed(p.subseed) if not isinstance(p.subseed, (list, tuple)) else p.subseed


def _outdir(p, kind: str) -> Path:
    explicit = p.outpath_samples if kind == "samples" else p.outpath_grids
    key = f"outdir_{'img2img' if p.is_img2img else 'txt2img'}_{kind}"
    return images.output_dir(p.opts, key, p.env.data_dir, explicit)


def _maybe_save(p, image, index: int, text: str) -> None:
    if p.do_not_save_samples or not p.opts.samples_save:
        return
    images.save_image(image, _outdir(p, "samples"), seed=p.all_seeds[index], prompt=p.all_prompts[index],
                      info=text, opts=p.opts, p=p, callbacks=p.env.callbacks)


def _make_result(p, output_images: list, infotexts: list) -> Processed:
    index_of_first_image = 0
    if len(output_images) > 1 and (p.opts.return_grid or p.opts.grid_save):
        grid = images.image_grid(output_images, batch_size=p.batch_size)
        text = infotexts[0]
        if p.opts.return_grid:
            output_images.insert(0, grid)
            infotexts.insert(0, text)
            index_of_first_image = 1
        if p.opts.grid_save and not p.do_not_save_grid:
            images.save_image(grid, _outdir(p, "grids"), seed=p.all_seeds[0], prompt=p.all_prompts[0], info=text,
                              opts=p.opts, p=p, grid=True, callbacks=p.env.callbacks)
    if getattr(p, "include_init_images", False):
        output_images.extend(p.init_images)
        infotexts.extend([""] * len(p.init_images))
    res = Processed(p, output_images, seed=p.all_seeds[0], info=infotexts[0] if infotexts else "",
                    subseed=p.all_subseeds[0], index_of_first_image=index_of_first_image, infotexts=infotexts)
    _call_script(p, "postprocess", res)
    return res
