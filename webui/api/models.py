"""Pydantic models of the /sdapi/v1 requests and responses, with A1111's field names and defaults.

Unknown fields are ignored (as A1111's pydantic-1 models did), so clients written for other A1111
versions keep working. Types are checked here; ranges, finiteness and names are checked by the
engine (modules.generation.validate), so the web UI and the API refuse the same input with the same
message (a 422 naming the field).
"""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Generation(_Request):
    """Fields shared by txt2img and img2img (A1111's StableDiffusionProcessing)."""
    prompt: str = ""
    negative_prompt: str = ""
    styles: Optional[list[str]] = None
    seed: int = Field(-1, description="-1 = random")
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: Optional[bool] = None
    tiling: Optional[bool] = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: Optional[float] = None
    denoising_strength: Optional[float] = None
    s_min_uncond: Optional[float] = None  # None: the setting "Negative Guidance minimum sigma"
    s_churn: Optional[float] = None
    s_tmax: Optional[float] = None
    s_tmin: Optional[float] = None
    s_noise: Optional[float] = None
    slg_scale: float = Field(0.0, description="skip-layer guidance (SD3 / SD3.5): 0 = off; 2.5 for SD3.5 Medium")
    slg_layers: Optional[Union[list[int], str]] = Field(None, description="joint blocks skipped (default 7,8,9)")
    slg_start: Optional[float] = Field(None, description="fraction of the steps where it starts (default 0.01)")
    slg_end: Optional[float] = Field(None, description="fraction of the steps where it ends (default 0.2)")
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
    denoising_strength: Optional[float] = 0.75
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: Optional[str] = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: Optional[str] = None
    hr_sampler_name: Optional[str] = None
    hr_scheduler: Optional[str] = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""


class StableDiffusionImg2ImgProcessingAPI(_Generation):
    init_images: Optional[list[str]] = None
    resize_mode: int = Field(0, description="0 just resize, 1 crop and resize, 2 resize and fill, "
                                            "3 just resize (latent upscale)")
    image_cfg_scale: Optional[float] = None
    mask: Optional[str] = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: Optional[int] = None
    mask_round: bool = True
    inpainting_fill: int = Field(0, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    initial_noise_multiplier: Optional[float] = None
    latent_mask: Optional[str] = None
    denoising_strength: Optional[float] = 0.75
    include_init_images: bool = Field(False, description="echo init_images and mask in `parameters`")


class TextToImageResponse(BaseModel):
    images: Optional[list[str]] = Field(None, description="base64 PNGs with the infotext chunk")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string: prompt, all_prompts, seed, all_seeds, infotexts...")


class ImageToImageResponse(TextToImageResponse):
    pass


class Depth2ImgRequest(_Request):
    """Not an A1111 route (A1111 runs depth models through img2img): the depth2img tab's fields."""
    init_images: list[str] = Field(description="base64 pictures; the first is used")
    depth_map: Optional[str] = Field(None, description="base64 grayscale depth map (white = near) used instead "
                                                       "of the model's estimate")
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = Field(-1, description="-1 = random")
    sampler_name: Optional[str] = None
    scheduler: Optional[str] = None
    steps: int = 20
    cfg_scale: float = 7.0
    denoising_strength: float = 0.75
    batch_size: int = 1
    width: Optional[int] = Field(None, description="default: the picture's width")
    height: Optional[int] = Field(None, description="default: the picture's height")
    eta: Optional[float] = None
    save_images: bool = Field(False, description="also save the results in the outputs folder (as A1111's API)")


class Depth2ImgResponse(BaseModel):
    images: list[str] = Field(description="base64 PNGs with the infotext chunk")
    depth_map: str = Field(description="base64 PNG of the depth map used (white = near)")
    info: str = Field(description="JSON string: seed, infotexts, depth map source (MiDaS or user)")


class ExtrasSingleImageRequest(_Request):
    resize_mode: int = Field(0, description="0 scale by upscaling_resize, 1 to w x h")
    show_extras_results: bool = True
    gfpgan_visibility: float = 0.0
    codeformer_visibility: float = 0.0
    codeformer_weight: float = 0.0
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0.0
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
    family: Optional[str] = Field(None, description="what the file is, read from its header (e.g. SD3.5 Medium)")


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
    workers: list[dict[str, Any]] | None = None  # with --workers / --ray-address: one entry per worker
