"""Pydantic models of the /sdapi/v1 requests and responses, with A1111's field names and defaults.

Unknown fields are ignored (as A1111's pydantic-1 models did), so clients written for other A1111
versions keep working. Static bounds live here (a negative or absurd number is a 422 naming the
field); bounds that depend on settings (img_max_size, max_batch_count) are checked by the routes.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

MAX_STEPS = 1000          # the models were trained on 1000 timesteps: more steps buy nothing
MAX_SIDE = 16384          # img_max_size's own upper bound; the setting usually says less
MAX_BATCH_SIZE = 64
MAX_SEED = 2**63 - 1


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Generation(_Request):
    """Fields shared by txt2img and img2img (A1111's StableDiffusionProcessing)."""
    prompt: str = ""
    negative_prompt: str = ""
    styles: Optional[list[str]] = None
    seed: int = Field(-1, ge=-1, le=MAX_SEED, description="-1 = random")
    subseed: int = Field(-1, ge=-1, le=MAX_SEED)
    subseed_strength: float = Field(0.0, ge=0.0, le=1.0)
    seed_resize_from_h: int = Field(-1, ge=-1, le=MAX_SIDE)
    seed_resize_from_w: int = Field(-1, ge=-1, le=MAX_SIDE)
    sampler_name: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: int = Field(1, ge=1, le=MAX_BATCH_SIZE)
    n_iter: int = Field(1, ge=1, le=10000)
    steps: int = Field(50, ge=1, le=MAX_STEPS)
    cfg_scale: float = Field(7.0, ge=0.0, le=100.0, allow_inf_nan=False)
    width: int = Field(512, ge=8, le=MAX_SIDE)
    height: int = Field(512, ge=8, le=MAX_SIDE)
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: Optional[float] = Field(None, ge=0.0, le=10.0, allow_inf_nan=False)
    denoising_strength: Optional[float] = Field(None, ge=0.0, le=1.0)
    s_min_uncond: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    s_churn: Optional[float] = Field(None, ge=0.0, le=100.0, allow_inf_nan=False)
    s_tmax: Optional[float] = Field(None, ge=0.0)
    s_tmin: Optional[float] = Field(None, ge=0.0, allow_inf_nan=False)
    s_noise: Optional[float] = Field(None, ge=0.0, le=10.0, allow_inf_nan=False)
    override_settings: Optional[dict[str, Any]] = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: Optional[str] = None
    refiner_switch_at: Optional[float] = None
    disable_extra_networks: bool = False
    firstpass_image: Optional[str] = None
    comments: Optional[dict[str, Any]] = None
    force_task_id: Optional[str] = None
    sampler_index: str = "Euler"  # A1111's API: the sampler when sampler_name is not given
    script_name: Optional[str] = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: Optional[str] = None


class StableDiffusionTxt2ImgProcessingAPI(_Generation):
    enable_hr: bool = False
    denoising_strength: Optional[float] = Field(0.75, ge=0.0, le=1.0)
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = Field(2.0, ge=1.0, le=8.0, allow_inf_nan=False)
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: int = Field(0, ge=0, le=MAX_STEPS)
    hr_resize_x: int = Field(0, ge=0, le=MAX_SIDE)
    hr_resize_y: int = Field(0, ge=0, le=MAX_SIDE)
    hr_checkpoint_name: Optional[str] = None
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class StableDiffusionImg2ImgProcessingAPI(_Generation):
    init_images: Optional[list[str]] = None
    resize_mode: int = Field(0, ge=0, le=3, description="0 just resize, 1 crop and resize, 2 resize and fill, "
                                                       "3 just resize (latent upscale)")
    image_cfg_scale: Optional[float] = None
    mask: Optional[str] = None
    mask_blur_x: int = Field(4, ge=0, le=256)
    mask_blur_y: int = Field(4, ge=0, le=256)
    mask_blur: Optional[int] = Field(None, ge=0, le=256)
    mask_round: bool = True
    inpainting_fill: int = Field(0, ge=0, le=3, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = Field(0, ge=0, le=MAX_SIDE)
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    initial_noise_multiplier: Optional[float] = Field(None, ge=0.0, le=2.0)
    latent_mask: Optional[str] = None
    denoising_strength: Optional[float] = Field(0.75, ge=0.0, le=1.0)
    include_init_images: bool = Field(False, description="echo init_images and mask in `parameters`")


class TextToImageResponse(BaseModel):
    images: Optional[list[str]] = Field(None, description="base64 PNGs with the infotext chunk")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string: prompt, all_prompts, seed, all_seeds, infotexts...")


class ImageToImageResponse(TextToImageResponse):
    pass


class ExtrasSingleImageRequest(_Request):
    resize_mode: int = Field(0, ge=0, le=1, description="0 scale by upscaling_resize, 1 to w x h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_visibility: float = Field(0.0, ge=0.0, le=1.0)
    codeformer_weight: float = Field(0.0, ge=0.0, le=1.0)
    upscaling_resize: float = Field(2.0, gt=0.0, le=8.0, allow_inf_nan=False)
    upscaling_resize_w: int = Field(512, ge=1, le=MAX_SIDE)
    upscaling_resize_h: int = Field(512, ge=1, le=MAX_SIDE)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(0.0, ge=0.0, le=1.0)
    upscale_first: bool = False
    image: str = ""


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: Optional[str] = None


class PNGInfoRequest(_Request):
    image: str


class PNGInfoResponse(BaseModel):
    info: str
    items: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)


class ProgressState(BaseModel):
    skipped: bool
    interrupted: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: ProgressState
    current_image: Optional[str] = None
    textinfo: Optional[str] = None
    current_task: Optional[str] = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: Optional[list[str]] = None
    default_rho: Optional[float] = None
    need_inner_model: Optional[bool] = None


class UpscalerItem(BaseModel):
    name: str
    model_name: Optional[str] = None
    model_path: Optional[str] = None
    model_url: Optional[str] = None
    scale: Optional[float] = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: Optional[str] = None
    sha256: Optional[str] = None
    filename: str
    config: Optional[str] = None


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class PromptStyleItem(BaseModel):
    name: str
    prompt: Optional[str] = None
    negative_prompt: Optional[str] = None


class ScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class ScriptArg(BaseModel):
    label: Optional[str] = None
    value: Optional[Any] = None
    minimum: Optional[Any] = None
    maximum: Optional[Any] = None
    step: Optional[Any] = None
    choices: Optional[list[Any]] = None


class ScriptInfo(BaseModel):
    name: Optional[str] = None
    is_alwayson: Optional[bool] = None
    is_img2img: Optional[bool] = None
    args: list[ScriptArg] = Field(default_factory=list)


class ExtensionItem(BaseModel):
    name: str
    remote: str = ""
    branch: str = ""
    commit_hash: str = ""
    version: str = ""
    commit_date: Any = ""
    enabled: bool = True


class EmbeddingItem(BaseModel):
    step: Optional[int] = None
    sd_checkpoint: Optional[str] = None
    sd_checkpoint_name: Optional[str] = None
    shape: Optional[int] = None  # None for a skipped file that could not be read
    vectors: Optional[int] = None


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem] = Field(default_factory=dict)
    skipped: dict[str, EmbeddingItem] = Field(default_factory=dict)


class MemoryResponse(BaseModel):
    ram: dict[str, Any]
    cuda: dict[str, Any]
