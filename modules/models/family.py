"""Model families: one small description per kind of model, which the rest of the engine asks
instead of branching on names (the idea of ComfyUI's supported_models / latent_formats /
model_sampling, written our own way and smaller).

A family says
- what it is: `name` (the config / build name), `title` (what the UI, the catalog and the API show);
- how it is conditioned: `conditioning` - "crossattn": `get_learned_conditioning` returns a tensor
  [B, 77k, C] (v1/v2); "crossattn+vector": a dict {"crossattn": [B, L, C], "vector": [B, D]}, the
  token context and the pooled vector (SD3, as A1111's SDXL/SD3 conds);
- how the network output becomes a denoised image: `prediction` - "eps" / "v" (k-diffusion's
  CompVisDenoiser / CompVisVDenoiser over the model's `alphas_cumprod`) or "flow" (rectified flow:
  the output is the velocity v = noise - x0, D(x, sigma) = x - sigma * v, see `denoised`);
- its noise schedule (`schedule`: discrete DDPM steps, or flow sigmas with a shift) and the model time
  the network is called with (`schedule.timestep(sigma)`);
- its latent format (`latent`: channels, VAE factor, scale and shift, RGB preview factors);
- its UI/API defaults (`defaults`: size, steps, CFG, sampler, schedule type).

How a family is detected (key shapes) and built (yaml or shapes) lives with the loaders
(modules/sd_detect.py, modules/sd3_detect.py); `for_config` maps the config a checkpoint was loaded
with to its family, and an SD3 model carries its family as `model.family`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# SD v1/v2 latent (times 0.18215) -> approximate RGB in [-1, 1], per channel (R, G, B); the widely
# used linear fit (A1111 "Approx cheap"; the same values as modules/images.py).
SD_RGB_FACTORS = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))

# SD3 latent (model space, after scale and shift) -> approximate RGB: Stability AI's own preview
# factors (Stability-AI/sd3.5, sd3_impls.py SD3LatentFormat, MIT licence).
SD3_RGB_FACTORS = (
    (-0.0645, 0.0177, 0.1052), (0.0028, 0.0312, 0.0650), (0.1848, 0.0762, 0.0360), (0.0944, 0.0360, 0.0889),
    (0.0897, 0.0506, -0.0364), (-0.0020, 0.1203, 0.0284), (0.0855, 0.0118, 0.0283), (-0.0539, 0.0658, 0.1047),
    (-0.0057, 0.0116, 0.0700), (-0.0412, 0.0281, -0.0039), (0.1106, 0.1171, 0.1220), (-0.0248, 0.0682, -0.0481),
    (0.0815, 0.0846, 0.1207), (-0.0120, -0.0055, -0.0867), (-0.0749, -0.0634, -0.0456), (-0.1418, -0.1457, -0.1259),
)


@dataclass(frozen=True)
class LatentFormat:
    channels: int  # latent channels the diffusion network works on
    scale_factor: float  # model latent = (VAE latent - shift_factor) * scale_factor
    shift_factor: float = 0.0
    downsampling: int = 8  # image pixels per latent cell along a side
    rgb_factors: tuple = ()  # per channel (R, G, B): model latent -> approximate RGB in [-1, 1]

    def process_in(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latent -> model latent."""
        return (z - self.shift_factor) * self.scale_factor

    def process_out(self, z: torch.Tensor) -> torch.Tensor:
        """Model latent -> VAE latent."""
        return z / self.scale_factor + self.shift_factor

    def preview(self, z: torch.Tensor) -> torch.Tensor:
        """Model latents [B, C, h, w] -> a cheap RGB preview [B, 3, h, w] in [0, 1] (no VAE)."""
        if z.ndim != 4 or z.shape[1] != self.channels or not self.rgb_factors:
            raise ValueError(f"preview needs (B, {self.channels}, h, w) latents, got {tuple(z.shape)}")
        factors = torch.tensor(self.rgb_factors, dtype=torch.float32)
        rgb = torch.einsum("bchw,cr->brhw", z.float().cpu(), factors)
        return ((rgb + 1) / 2).clamp(0, 1)


@dataclass(frozen=True)
class Schedule:
    kind: str  # "discrete": DDPM betas (the model carries alphas_cumprod); "flow": rectified flow
    shift: float = 1.0  # flow: sigma(t) = shift * t / (1 + (shift - 1) * t), t in (0, 1] (Esser et al. 2024, sec. 5.3.2)
    timesteps: int = 1000  # the network's time axis: t_model = timesteps * t (flow: 1000 * sigma)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """flow: the shifted sigma of a time t in (0, 1]."""
        if self.kind != "flow":
            raise ValueError("sigma(t) is defined for flow schedules; discrete ones use the model's alphas_cumprod")
        return self.shift * t / (1 + (self.shift - 1) * t)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """flow: the model time of a sigma (1000 * sigma; the shift is in the sigmas, not here)."""
        if self.kind != "flow":
            raise ValueError("discrete schedules map sigma to t through alphas_cumprod (k-diffusion's DiscreteSchedule)")
        return sigma * self.timesteps

    def table(self) -> torch.Tensor:
        """flow: the 1000 sigmas of t = 1/1000 .. 1 (the discrete table samplers and schedule types pick from)."""
        return self.sigma(torch.arange(1, self.timesteps + 1, dtype=torch.float64) / self.timesteps).float()


@dataclass(frozen=True)
class Defaults:
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str  # A1111 sampler name
    scheduler: str = "Automatic"  # A1111 schedule type
    size_step: int = 8  # size slider granularity in pixels


@dataclass(frozen=True)
class ModelFamily:
    name: str
    title: str
    prediction: str  # "eps" | "v" | "flow"
    conditioning: str  # "crossattn" | "crossattn+vector"
    latent: LatentFormat
    schedule: Schedule
    defaults: Defaults
    text_encoders: tuple = ()  # SD3: (required..., optional...) encoder names; v1/v2 carry one in cond_stage_model
    notes: tuple = field(default=())  # short facts shown next to the title (e.g. "no CFG" for turbo)

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """The denoised estimate D(x, sigma) from the network output at model time schedule.timestep(sigma)."""
        if self.prediction != "flow":
            raise ValueError(f"{self.name}: {self.prediction} models are denoised by k-diffusion's CompVis wrappers")
        sigma = sigma.reshape(sigma.shape[:1] + (1,) * (x.ndim - 1)).to(x.dtype)
        return x - sigma * output.to(x.dtype)


SD_LATENT = LatentFormat(channels=4, scale_factor=0.18215, rgb_factors=SD_RGB_FACTORS)
X4_LATENT = LatentFormat(channels=4, scale_factor=0.08333, downsampling=4, rgb_factors=SD_RGB_FACTORS)
SD3_LATENT = LatentFormat(channels=16, scale_factor=1.5305, shift_factor=0.0609, rgb_factors=SD3_RGB_FACTORS)
DDPM = Schedule("discrete")
FLOW = Schedule("flow", shift=3.0)  # 3.0 for every released SD3/3.5 model (ComfyUI, the diffusers configs)
SD3_ENCODERS = ("clip_l", "clip_g", "t5xxl")


def _ldm(name: str, title: str, prediction: str, size: int) -> ModelFamily:
    latent = X4_LATENT if name == "x4-upscaling" else SD_LATENT
    return ModelFamily(name, title, prediction, "crossattn", latent, DDPM, Defaults(size, size, 20, 7.0, "DPM++ 2M"))


def _sd3(name: str, title: str, steps: int, cfg: float, sampler: str, notes: tuple = ()) -> ModelFamily:
    # SAI's reference defaults (Stability-AI/sd3.5 sd3_infer.py), at the models' native 1024x1024
    return ModelFamily(name, title, "flow", "crossattn+vector", SD3_LATENT, FLOW,
                       Defaults(1024, 1024, steps, cfg, sampler, "Normal", size_step=16), SD3_ENCODERS, notes)


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (
    _ldm("v1-inference", "SD 1.x", "eps", 512),
    _ldm("v1-inpainting-inference", "SD 1.x inpainting", "eps", 512),
    _ldm("v2-inference", "SD 2.x", "eps", 512),
    _ldm("v2-inference-v", "SD 2.x-v", "v", 768),
    _ldm("v2-inpainting-inference", "SD 2.x inpainting", "eps", 512),
    _ldm("v2-midas-inference", "SD 2.x depth", "eps", 512),
    _ldm("x4-upscaling", "SD x4 upscaler", "v", 512),
    _sd3("sd3-medium", "SD3 Medium", 50, 5.0, "DPM++ 2M"),
    _sd3("sd3.5-large", "SD3.5 Large", 40, 4.5, "DPM++ 2M"),
    _sd3("sd3.5-large-turbo", "SD3.5 Large Turbo", 4, 1.0, "Euler", notes=("4 steps, no CFG",)),
    _sd3("sd3.5-medium", "SD3.5 Medium", 50, 5.0, "DPM++ 2M", notes=("skip-layer guidance on blocks 7-9",)),
    _sd3("sd3", "SD3 (other sizes)", 28, 5.0, "Euler"),
)}


def for_config(config: str | None) -> ModelFamily | None:
    """The family of the config a checkpoint was loaded with (a bundled or SD3 name, or a yaml path
    whose file name contains one); None for a user's yaml that names none."""
    name = str(config or "").replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".yaml")
    if name in FAMILIES:
        return FAMILIES[name]
    return next((f for key, f in sorted(FAMILIES.items(), key=lambda kv: -len(kv[0])) if key in name), None)


def of_model(model) -> ModelFamily:
    """The family of a loaded model: its own `family`, else from its parameterization and latent size."""
    family = getattr(model, "family", None)
    if isinstance(family, ModelFamily):
        return family
    prediction = getattr(model, "parameterization", "eps")
    if getattr(model, "low_scale_model", None) is not None:  # not the VAE factor: the v1 demo's is 4 too
        return FAMILIES["x4-upscaling"]
    return FAMILIES["v2-inference-v" if prediction == "v" else "v1-inference"]
