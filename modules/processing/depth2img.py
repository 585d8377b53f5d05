"""depth2img (SD 2 `512-depth-ema`): img2img whose UNet also sees a depth map (5th input channel).

Depth as the original (`ldm.data.util.AddMiDaS` + `LatentDepth2ImageDiffusion.get_input`):
image [-1, 1] -> [0, 1] -> bicubic to the MiDaS size (aspect kept, sides multiples of 32, the scale
closest to 1 of those fitting 384: "minimal") -> mean = std = 0.5 -> MiDaS -> bicubic to the latent
size -> min-max to [-1, 1] per image. The same map is c_concat for cond and uncond. A user's depth map
(grayscale, brighter = nearer, like MiDaS's output) replaces the estimate, so models loaded without
the MiDaS weights work too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from modules import infotext
from modules.models import family as model_family
from modules.processing import vae
from modules.processing.hybrid_sampling import SamplingSettings, sample_hybrid
from modules.sampling import rng, samplers

MIDAS_SIZE = 384  # DPT-Hybrid's training resolution
MIDAS_MULTIPLE = 32  # its input sides must be multiples of 32 (layer4 is /32)


def midas_input_size(width: int, height: int, net_size: int = MIDAS_SIZE,
                     multiple: int = MIDAS_MULTIPLE) -> tuple[int, int]:
    """(width, height) MiDaS sees: 512x512 -> 384x384, 768x512 -> 576x384 (MiDaS Resize, "minimal")."""
    scale_w, scale_h = net_size / width, net_size / height
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h  # scale as little as possible
    fit = lambda v: max(multiple, int(round(v / multiple)) * multiple)  # noqa: E731
    return fit(scale * width), fit(scale * height)


def prepare_midas_input(image: torch.Tensor, net_size: int = MIDAS_SIZE) -> torch.Tensor:
    """image [B, 3, H, W] in [-1, 1] -> MiDaS input [B, 3, h, w], normalised with mean = std = 0.5."""
    w, h = midas_input_size(image.shape[-1], image.shape[-2], net_size)
    x = (image.float() + 1.0) / 2.0
    x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)  # cv2 INTER_CUBIC, a = -0.75
    return (x - 0.5) / 0.5


def normalize_depth(depth: torch.Tensor) -> torch.Tensor:
    """Min-max per image to [-1, 1]; a flat map becomes -1 everywhere (as the original's formula)."""
    lo = depth.amin(dim=(1, 2, 3), keepdim=True)
    hi = depth.amax(dim=(1, 2, 3), keepdim=True)
    return 2.0 * (depth - lo) / (hi - lo).clamp_min(1e-8) - 1.0


def has_depth_estimator(model) -> bool:
    """True when the model carries usable MiDaS weights (not absent, not left on the meta device)."""
    depth_model = getattr(model, "depth_model", None)
    if depth_model is None:
        return False
    first = next(depth_model.parameters(), None)
    return first is not None and first.device.type != "meta"


def estimate_depth(depth_model, image: torch.Tensor, net_size: Optional[int] = None) -> torch.Tensor:
    """image [B, 3, H, W] in [-1, 1] -> MiDaS relative inverse depth [B, 1, h, w] at the MiDaS size
    (net_size: default the network's training resolution, 384 for DPT-Hybrid)."""
    net_size = net_size or getattr(depth_model, "net_size", MIDAS_SIZE)
    param = next(depth_model.parameters())
    x = prepare_midas_input(image, net_size).to(param.device, param.dtype)
    with torch.no_grad():
        return depth_model(x).float()


def depth_map_tensor(depth_map: Image.Image) -> torch.Tensor:
    """A user's depth map (8/16-bit grayscale, or RGB of a grayscale picture) -> [1, 1, H, W] float."""
    if depth_map.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(depth_map, dtype=np.float32)
    else:
        arr = np.asarray(depth_map.convert("L"), dtype=np.float32)
    return torch.from_numpy(arr.copy())[None, None]


def depth_to_image(depth: torch.Tensor, width: int, height: int) -> Image.Image:
    """One depth map [1, 1, h, w] -> 8-bit grayscale at width x height (min-max, white = near)."""
    d = F.interpolate(depth[:1].float(), size=(height, width), mode="bicubic", align_corners=False)
    d = (normalize_depth(d) + 1.0) / 2.0
    return Image.fromarray((d[0, 0].clamp(0, 1) * 255.0).round().byte().cpu().numpy(), mode="L")


@dataclass
class DepthConditioning:
    cond: torch.Tensor  # c_concat [B, 1, h, w] in [-1, 1] at the latent size
    image: Image.Image  # the depth map used, at the image size (8-bit grayscale)
    source: str  # "MiDaS" or "user": recorded in the infotext


def depth_image_conditioning(model, source: torch.Tensor, depth_map: Optional[Image.Image] = None,
                             net_size: Optional[int] = None) -> DepthConditioning:
    """c_concat for a depth model from the init image source [B, 3, H, W] in [-1, 1] (A1111's
    depth2img_image_conditioning), or from the user's depth_map when given (MiDaS is then not run)."""
    b, _, h, w = source.shape
    f = model.vae_scale_factor
    if depth_map is not None:
        raw, kind = depth_map_tensor(depth_map).expand(b, -1, -1, -1), "user"
    elif has_depth_estimator(model):
        raw, kind = estimate_depth(model.depth_model, source, net_size), "MiDaS"
    else:
        raise ValueError("this depth model was loaded without its MiDaS weights (no depth_model.* in the "
                         "checkpoint), so it cannot estimate depth: upload a depth map (grayscale, white = near)")
    cond = F.interpolate(raw, size=(h // f, w // f), mode="bicubic", align_corners=False)
    cond = normalize_depth(cond).to(source.device)
    return DepthConditioning(cond=cond, image=depth_to_image(raw, w, h), source=kind)


NOT_A_DEPTH_MODEL = ("depth2img needs a depth model (SD 2 512-depth-ema, 5-channel UNet), and the loaded checkpoint "
                     "is {title}: put a depth checkpoint (with v2-midas-inference.yaml beside it) into "
                     "models/Stable-diffusion and refresh, or load one in the checkpoint dropdown")


def is_depth_model(model) -> bool:
    unet = model.model.diffusion_model
    return unet.config.in_channels == model.latent_channels + 1


@dataclass
class Depth2ImgRequest:
    image: Image.Image
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    denoising_strength: float = 0.75
    width: Optional[int] = None  # default: the image's size, rounded down to whole latent cells
    height: Optional[int] = None
    depth_map: Optional[Image.Image] = None  # replaces the MiDaS estimate
    batch_size: int = 1


@dataclass
class Depth2ImgResult:
    images: list  # PIL images
    depth_image: Image.Image
    seed: int
    params: dict  # generation parameters (A1111 infotext names)
    infotexts: list  # one "parameters" text per image


def _size(req: Depth2ImgRequest, f: int) -> tuple[int, int]:
    w, h = req.width or req.image.width, req.height or req.image.height
    w, h = w // f * f, h // f * f
    if w < f or h < f:
        raise ValueError(f"size {w}x{h} is too small: width and height must be at least {f}")
    return w, h


def depth2img(model, req: Depth2ImgRequest, *, encoder: Any = None, interrupt: Any = None) -> Depth2ImgResult:
    """Run depth2img: init image + depth -> images (img2img with denoising_strength)."""
    if not is_depth_model(model):
        raise ValueError(NOT_A_DEPTH_MODEL.format(title=model_family.of_model(model).title))
    if not 0.0 <= req.denoising_strength <= 1.0:
        raise ValueError(f"denoising strength must be between 0 and 1, got {req.denoising_strength}")
    if req.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {req.batch_size}")
    f = model.vae_scale_factor
    w, h = _size(req, f)
    image = req.image.convert("RGB").resize((w, h), Image.LANCZOS) if req.image.size != (w, h) else req.image
    device = model.alphas_cumprod.device
    source = vae.pil_to_tensor([image] * req.batch_size).to(device)
    depth = depth_image_conditioning(model, source, req.depth_map)
    init_latent = vae.encode(model, source)
    seed = rng.fix_seed(req.settings.seed)
    latent = sample_hybrid(model, req.settings, depth.cond.to(init_latent.dtype), tuple(init_latent.shape[1:]),
                           seed=seed, init_latent=init_latent, denoising_strength=req.denoising_strength,
                           encoder=encoder, interrupt=interrupt)
    images = vae.tensor_to_pil(vae.decode(model, latent))
    params = _params(req, seed, w, h, depth.source)
    texts = [infotext.create_infotext(req.settings.prompt, req.settings.negative_prompt, {**params, "Seed": seed + i})
             for i in range(len(images))]
    return Depth2ImgResult(images=images, depth_image=depth.image, seed=seed, params=params, infotexts=texts)


def _params(req: Depth2ImgRequest, seed: int, w: int, h: int, depth_source: str) -> dict:
    s = req.settings
    info, scheduler = samplers.resolve_sampler_and_scheduler(s.sampler_name, s.scheduler)
    return {"Steps": s.steps, "Sampler": s.sampler_name, "Schedule type": s.scheduler, "CFG scale": s.cfg_scale,
            "Seed": seed, "Size": f"{w}x{h}", "Denoising strength": req.denoising_strength,
            "Depth map": depth_source, **samplers.schedule_settings(info, scheduler, s.opts)[1]}
