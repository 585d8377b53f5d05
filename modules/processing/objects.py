"""The request and result objects of generation, with A1111's attribute names.

Extensions written for A1111 read and write these attributes (`p.prompt`, `p.seed`, `p.init_images`,
`p.extra_generation_params`, `processed.images` ...), so the names, defaults and meanings are A1111's.
What a job needs besides the request (options, job handle, output folder, prompt encoder, hooks) is
one `ProcessingEnv` attached as `p.env`: nothing is read from module globals.

A1111 surface supported (modules.processing): StableDiffusionProcessingTxt2Img / Img2Img with the
request fields of A1111's API and the run-time lists (all_prompts, all_seeds, all_subseeds, prompts,
seeds, iteration, batch_index, extra_generation_params, comments, sd_model, sd_model_name/hash,
scripts, script_args); process_images(p); Processed (images, infotexts, seed(s), prompt(s), info,
js(), index_of_first_image, comments); create_infotext(p, all_prompts, all_seeds, all_subseeds,
comments, iteration, position_in_batch); fix_seed(p). Not supported: refiner, instruct-pix2pix
image CFG (stored and reported only), color correction, soft inpainting.

The pipelines themselves live beside this file: pipeline.py (the loop), txt2img.py, img2img.py,
inpaint.py, hires.py and vae.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from modules.sampling.cfg_denoiser import CFGHooks
from modules.upscalers import UpscalerTable


class ScriptHooks:
    """The AlwaysVisible script hook points, called by process_images with A1111's arguments.

    `p.scripts` is an object with these methods (A1111's ScriptRunner; the extensions helper's runner
    implements them). Every one is optional: a missing method is skipped."""

    def before_process(self, p) -> None: ...
    def process(self, p) -> None: ...
    def before_process_batch(self, p, batch_number: int, prompts: list, seeds: list, subseeds: list) -> None: ...
    def process_batch(self, p, batch_number: int, prompts: list, seeds: list, subseeds: list) -> None: ...
    def postprocess_batch(self, p, images, batch_number: int) -> None: ...
    def postprocess_image(self, p, pp: "PostprocessImageArgs") -> None: ...
    def postprocess(self, p, processed: "Processed") -> None: ...


@dataclass
class PostprocessImageArgs:
    """A1111's scripts.PostprocessImageArgs: a script may replace `image`."""

    image: Any


@dataclass
class ImageSaveParams:
    """A1111's script_callbacks.ImageSaveParams, given to on_before_image_saved (may edit pnginfo)."""

    image: Any
    p: Any
    filename: str
    pnginfo: dict


@dataclass
class ProcessingCallbacks:
    """script_callbacks a job calls: the CFG denoiser hooks, and around saving an image.
    The extensions helper fills the lists; each call is isolated by whoever wraps the callables."""

    cfg: CFGHooks = field(default_factory=CFGHooks)
    on_before_image_saved: list[Callable[[ImageSaveParams], None]] = field(default_factory=list)
    on_image_saved: list[Callable[[ImageSaveParams], None]] = field(default_factory=list)


@dataclass
class ProcessingEnv:
    """Everything a job needs besides the request. Front ends build one per job (`from_context`).

    opts: modules.options.Options. job: modules.jobs.Job (progress, interrupt/skip) or None.
    data_dir: relative output folders (opts.outdir_*) are under it. conditioner: callable
    `(model, opts) -> encoder` with `.multicond(prompts, steps, hires_steps=None)` and
    `.scheduled(prompts, steps, hires_steps=None)` (see processing.prompts). styles: object with
    `apply_styles_to_prompt(prompt, names)` / `apply_negative_styles_to_prompt`. extra_networks:
    callable `(model, prompts) -> (prompts without <lora:...> tags, context manager for the job)`.
    upscalers: the upscaler table (modules.upscalers.UpscalerTable: Lanczos, Nearest and model upscalers).
    face_restorer: what "Restore faces" runs (`restore(image) -> image`, settings face_restoration_model,
    code_former_weight).
    model_name/model_hash/vae_name/vae_hash: for the infotext. max_batch: rows per UNet call.
    """

    opts: Any
    job: Any = None
    data_dir: Path | None = None
    conditioner: Callable | None = None
    styles: Any = None
    extra_networks: Callable | None = None
    upscalers: UpscalerTable = field(default_factory=UpscalerTable)
    face_restorer: Any = None  # modules.face_restoration.service.FaceRestorers (`restore(image)`), or None
    callbacks: ProcessingCallbacks = field(default_factory=ProcessingCallbacks)
    model_name: str | None = None
    model_hash: str | None = None
    vae_name: str | None = None
    vae_hash: str | None = None
    max_batch: int | None = None
    checkpoint_dirs: tuple = ()

    @classmethod
    def from_context(cls, ctx, job=None, **kw) -> "ProcessingEnv":
        """From the AppContext: options, paths, the loaded model's names, the services."""
        models, services = ctx.models, ctx.services
        return cls(
            opts=ctx.opts, job=job, data_dir=ctx.paths.data_dir,
            conditioner=services.conditioner, styles=services.styles, extra_networks=services.extra_networks,
            upscalers=services.upscalers, face_restorer=services.face_restorers, callbacks=services.callbacks or ProcessingCallbacks(),
            model_name=getattr(models, "sd_model_name", None), model_hash=getattr(models, "sd_model_hash", None),
            vae_name=getattr(models, "sd_vae_name", None), vae_hash=getattr(models, "sd_vae_hash", None),
            checkpoint_dirs=tuple(ctx.paths.ckpt_dirs), **kw)


def _list() -> Any:
    return field(default_factory=list)


@dataclass(eq=False)
class StableDiffusionProcessing:
    """Fields shared by txt2img and img2img (A1111's names and defaults)."""

    sd_model: Any = None
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    prompt: str | list = ""
    negative_prompt: str | list = ""
    styles: list = _list()
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = field(default_factory=dict)
    overlay_images: list | None = None
    eta: float | None = None
    s_min_uncond: float | None = None  # None: the setting (Negative Guidance minimum sigma)
    s_churn: float | None = None
    s_tmin: float | None = None
    s_tmax: float | None = None
    s_noise: float | None = None
    override_settings: dict = field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    token_merging_ratio: float = 0.0     # 0: the settings' (sample.token_merging_ratio)
    token_merging_ratio_hr: float = 0.0
    denoising_strength: float | None = None
    disable_extra_networks: bool = False
    scripts: Any = None          # ScriptHooks-like runner (extensions helper)
    script_args: list = _list()
    env: ProcessingEnv | None = None
    user: str | None = None

    # filled while the job runs (A1111's names)
    all_prompts: list = _list()
    all_negative_prompts: list = _list()
    all_seeds: list = _list()
    all_subseeds: list = _list()
    prompts: list = _list()
    negative_prompts: list = _list()
    seeds: list = _list()
    subseeds: list = _list()
    iteration: int = 0
    batch_index: int = 0
    comments: dict = field(default_factory=dict)
    warnings: list = _list()
    sampler: Any = None          # samplers.SamplerInfo of the run
    scheduler_info: Any = None   # sampling.schedules.Scheduler of the run
    is_hr_pass: bool = False
    image_conditioning: Any = None
    job_timestamp: str = ""

    is_img2img = False

    @property
    def job(self):
        return self.env.job if self.env is not None else None

    @property
    def opts(self):
        return self.env.opts if self.env is not None else None

    @property
    def sd_model_name(self) -> str | None:
        return self.env.model_name if self.env is not None else None

    @property
    def sd_model_hash(self) -> str | None:
        return self.env.model_hash if self.env is not None else None

    def add_warning(self, text: str) -> None:
        """Shown in the job's info (Processed.comments) and logged; never silently dropped."""
        if text not in self.warnings:
            self.warnings.append(text)
        self.comments[text] = 1

    def check_size(self, width: int, height: int, what: str = "image") -> None:
        limit = int(self.opts.img_max_size) if self.opts is not None else 16384
        if width > limit or height > limit:
            raise ValueError(f"{what} size {width}x{height} is larger than the limit of {limit} pixels a side "
                             "(setting img_max_size): choose a smaller size")

    def close(self) -> None:
        """Free per-job tensors and let the script runner remove its per-job model patches (A1111
        calls this after a job, also when the job failed)."""
        self.image_conditioning = None
        self.sampler = None
        close = getattr(self.scripts, "close", None)
        if close is not None:
            close(self)


@dataclass(eq=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    firstphase_width: int = 0     # A1111's old names, accepted and ignored
    firstphase_height: int = 0
    # filled while the job runs
    hr_upscale_to_x: int = 0
    hr_upscale_to_y: int = 0
    hr_final_size: tuple = (0, 0)
    all_hr_prompts: list = _list()
    all_hr_negative_prompts: list = _list()


RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
INPAINTING_FILL = ("fill", "original", "latent noise", "latent nothing")


@dataclass(eq=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = _list()
    resize_mode: int = 0
    denoising_strength: float | None = 0.75
    image_cfg_scale: float | None = None   # instruct-pix2pix models only; kept for the API/infotext
    mask: Any = None                       # A1111's API name for image_mask
    image_mask: Any = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: float | None = None
    latent_mask: Any = None
    include_init_images: bool = False
    # c_concat maker `(p, source [B, 3, H, W] in [-1, 1], image_mask PIL | None) -> tensor | None`: lets
    # depth2img (5-ch) and others reuse this pipeline; None = ordinary / 9-ch inpainting models.
    image_conditioner: Callable | None = None
    # filled while the job runs
    init_latent: Any = None
    nmask: Any = None
    mask_for_overlay: Any = None
    paste_to: tuple | None = None
    source_images: list = _list()   # the init images as prepared for the VAE (after resize/crop)

    is_img2img = True

    def __post_init__(self):
        if self.image_mask is None and self.mask is not None:
            self.image_mask = self.mask
        if self.mask_blur is not None:  # A1111: one value sets both directions
            self.mask_blur_x = self.mask_blur_y = self.mask_blur


class Processed:
    """The result of process_images: images, their infotexts and seeds (A1111's names)."""

    def __init__(self, p: StableDiffusionProcessing, images_list: list, seed: int = -1, info: str = "",
                 subseed: int | None = None, all_prompts=None, all_negative_prompts=None, all_seeds=None,
                 all_subseeds=None, index_of_first_image: int = 0, infotexts=None, comments: str = "",
                 extra_images_list=None):
        images = images_list  # A1111's parameter name (scripts pass images_list=...)
        self.images = images
        self.extra_images = list(extra_images_list or [])
        self.prompt = p.prompt
        self.negative_prompt = p.negative_prompt
        self.seed = seed
        self.subseed = subseed
        self.subseed_strength = p.subseed_strength
        self.info = info
        self.comments = "".join(f"{c}\n" for c in p.comments) if not comments else comments
        self.width, self.height = p.width, p.height
        self.sampler_name = p.sampler_name
        self.scheduler = p.scheduler
        self.cfg_scale = p.cfg_scale
        self.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.steps = p.steps
        self.batch_size = p.batch_size
        self.restore_faces = p.restore_faces
        self.face_restoration_model = p.opts.face_restoration_model if p.restore_faces and p.opts else None
        self.sd_model_name = p.env.model_name if p.env else None
        self.sd_model_hash = p.env.model_hash if p.env else None
        self.sd_vae_name = p.env.vae_name if p.env else None
        self.sd_vae_hash = p.env.vae_hash if p.env else None
        self.seed_resize_from_w, self.seed_resize_from_h = p.seed_resize_from_w, p.seed_resize_from_h
        self.denoising_strength = p.denoising_strength
        self.extra_generation_params = dict(p.extra_generation_params)
        self.index_of_first_image = index_of_first_image
        self.styles = list(p.styles)
        self.job_timestamp = p.job_timestamp
        self.clip_skip = p.opts.CLIP_stop_at_last_layers if p.opts is not None else 1
        self.all_prompts = all_prompts or p.all_prompts or [p.prompt]
        self.all_negative_prompts = all_negative_prompts or p.all_negative_prompts or [p.negative_prompt]
        self.all_seeds = all_seeds or p.all_seeds or [seed]
        self.all_subseeds = all_subseeds or p.all_subseeds or [subseed]
        self.infotexts = infotexts or [info] * len(images)
        self.warnings = list(p.warnings)

    def js(self) -> str:
        """The JSON `info` string of A1111's API responses and the UI's generation info."""
        obj = {
            "prompt": self.all_prompts[0], "all_prompts": self.all_prompts,
            "negative_prompt": self.all_negative_prompts[0], "all_negative_prompts": self.all_negative_prompts,
            "seed": self.seed, "all_seeds": self.all_seeds, "subseed": self.subseed,
            "all_subseeds": self.all_subseeds, "subseed_strength": self.subseed_strength,
            "width": self.width, "height": self.height, "sampler_name": self.sampler_name,
            "scheduler": self.scheduler, "cfg_scale": self.cfg_scale, "image_cfg_scale": self.image_cfg_scale,
            "steps": self.steps, "batch_size": self.batch_size, "restore_faces": self.restore_faces,
            "face_restoration_model": self.face_restoration_model, "sd_model_name": self.sd_model_name,
            "sd_model_hash": self.sd_model_hash, "sd_vae_name": self.sd_vae_name, "sd_vae_hash": self.sd_vae_hash,
            "seed_resize_from_w": self.seed_resize_from_w, "seed_resize_from_h": self.seed_resize_from_h,
            "denoising_strength": self.denoising_strength,
            "extra_generation_params": self.extra_generation_params,
            "index_of_first_image": self.index_of_first_image, "infotexts": self.infotexts,
            "styles": self.styles, "job_timestamp": self.job_timestamp, "clip_skip": self.clip_skip,
            "comments": self.comments, "warnings": self.warnings,
        }
        return json.dumps(obj, default=str)

    def infotext(self, p, index: int) -> str:
        return self.infotexts[index] if 0 <= index < len(self.infotexts) else ""
