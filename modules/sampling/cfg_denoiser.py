"""The classifier-free-guidance denoiser the samplers call: `(x, sigma, **extra_args) -> denoised`.

Per call it picks the conditioning of the current step (prompt editing), runs every AND sub-prompt
of every image and every image's negative prompt through the UNet in one batch (or in slices of
`max_batch` rows when memory is short), and combines them (composable diffusion, Liu et al. 2022):

    denoised = uncond + sum_i (cond_i - uncond) * weight_i * cfg_scale

extra_args (what the sampler passes through): cond (cond_schedule.MultiCond), uncond
(list[ScheduledCond], one per image), cond_scale, image_cond (the c_concat tensor of hybrid models:
inpainting 5 extra channels, depth 1, x4 3; None for ordinary models), s_min_uncond.

Like A1111, the step counter that selects the conditioning advances once per call, so second-order
samplers (two UNet calls per step) get schedules built for 2 x steps (see `schedule_steps`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from modules.cond_schedule import MultiCond, ScheduledCond, pad_to_same_length

NAN_MESSAGE = (
    "the UNet produced NaNs: try --no-half (or --upcast-sampling / 'Upcast cross attention layer to "
    "float32'); half precision could not represent this picture or the card does not support it"
)


class NansError(RuntimeError):
    """The UNet output contains NaNs (usually fp16 overflow)."""


class SamplingInterrupted(Exception):
    """Raised inside the sampler loop to stop it; `latent` is the last denoised prediction."""

    def __init__(self, latent: torch.Tensor | None, reason: str = "interrupted"):
        super().__init__(reason)
        self.latent = latent
        self.reason = reason


@dataclass
class CFGDenoiserParams:
    """on_cfg_denoiser: may replace any field before the UNet runs (A1111's names)."""

    x: torch.Tensor  # (rows, C, H, W): every cond row, then every uncond row
    image_cond: torch.Tensor | None
    sigma: torch.Tensor
    sampling_step: int
    total_sampling_steps: int
    text_cond: torch.Tensor  # (n_cond, T, C)
    text_uncond: torch.Tensor  # (batch, T, C)
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    """on_cfg_denoised: the raw UNet predictions (x) before they are combined."""

    x: torch.Tensor
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any = None


@dataclass
class AfterCFGCallbackParams:
    """on_cfg_after_cfg: the combined prediction, may be replaced."""

    x: torch.Tensor
    sampling_step: int
    total_sampling_steps: int


@dataclass
class CFGHooks:
    """Extension callbacks, called in order with the params objects above."""

    on_cfg_denoiser: list[Callable[[CFGDenoiserParams], None]] = field(default_factory=list)
    on_cfg_denoised: list[Callable[[CFGDenoisedParams], None]] = field(default_factory=list)
    on_cfg_after_cfg: list[Callable[[AfterCFGCallbackParams], None]] = field(default_factory=list)


class LatentBlend:
    """Inpainting with an ordinary model: after every step keep the known latent outside the mask.

    nmask: 1 where new content is generated, 0 where init_latent is kept (broadcastable to x)."""

    def __init__(self, init_latent: torch.Tensor, nmask: torch.Tensor):
        self.init_latent = init_latent
        self.nmask = nmask

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        return self.init_latent * (1 - self.nmask) + latent * self.nmask


def schedule_steps(steps: int, second_order: bool) -> int:
    """How many steps prompt schedules must be built for: the denoiser counts calls."""
    return steps * 2 if second_order else steps


def _is_stopped(interrupt) -> str | None:
    if interrupt is None:
        return None
    if callable(interrupt) and not hasattr(interrupt, "interrupted"):
        return "interrupted" if interrupt() else None
    if getattr(interrupt, "interrupted", False):
        return "interrupted"
    if getattr(interrupt, "skipped", False):
        return "skipped"
    return None


def _repeat_rows(t: torch.Tensor, repeats: list[int]) -> torch.Tensor:
    """Row i repeated repeats[i] times, then all rows once more (for the uncond half)."""
    parts = [t[i:i + 1].expand(n, *t.shape[1:]) for i, n in enumerate(repeats)]
    return torch.cat(parts + [t])


class CFGDenoiser:
    """inner_model: k-diffusion denoiser `(x, sigma, cond=...) -> denoised` (samplers.make_denoiser).

    total_steps: for the hooks' total_sampling_steps. max_batch: most rows per UNet call (None: all
    in one). interrupt: an object with .interrupted/.skipped flags or a callable, checked every call.
    blend: called on the combined prediction (LatentBlend for inpainting), or on x before the UNet if
    blend_before. check_nans: raise NansError when the UNet output has NaNs.
    keep_uncond: keep the unconditional prediction in `last_uncond` (CFG++); cond_scale_multiplier
    scales cond_scale (CFG++: 1 / 12.5). ngms_all_steps, skip_early_cond: see skips_uncond.
    """

    def __init__(self, inner_model, total_steps: int, *, max_batch: int | None = None,
                 hooks: CFGHooks | None = None, interrupt=None, blend: Callable | None = None,
                 blend_before: bool = False, check_nans: bool = True, keep_uncond: bool = False,
                 cond_scale_multiplier: float = 1.0, ngms_all_steps: bool = False,
                 skip_early_cond: float = 0.0):
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.inner_model = inner_model
        self.total_steps = total_steps
        self.max_batch = max_batch
        self.hooks = hooks or CFGHooks()
        self.interrupt = interrupt
        self.blend = blend
        self.blend_before = blend_before
        self.check_nans = check_nans
        self.step = 0  # model calls so far: selects the conditioning (A1111's CFGDenoiser.step)
        self.sampling_step = 0  # the sampler's last reported step (A1111's state.sampling_step)
        self.last_denoised: torch.Tensor | None = None
        # CFG++ samplers read the unconditional prediction (so it is never skipped for them)
        self.keep_uncond = keep_uncond
        self.last_uncond: torch.Tensor | None = None
        self.cond_scale_multiplier = cond_scale_multiplier
        self.ngms_all_steps = ngms_all_steps
        self.skip_early_cond = skip_early_cond
        self.infotext: dict = {}  # what a skipped negative prompt adds to the infotext (A1111's keys)
        self.skipped_uncond_steps: list[int] = []  # model calls that ran without the negative prompt

    def callback(self, d: dict) -> None:
        """Pass to the sampler (chained with others) so hooks see the sampler's step."""
        self.sampling_step = int(d["i"])

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: MultiCond,
                 uncond: list[ScheduledCond], cond_scale: float, image_cond: torch.Tensor | None = None,
                 s_min_uncond: float = 0.0) -> torch.Tensor:
        stopped = _is_stopped(self.interrupt)
        if stopped:
            raise SamplingInterrupted(self.last_denoised, stopped)
        conds, index = cond.at(self.step)
        unconds = [u.at(self.step) for u in uncond]
        batch = x.shape[0]
        if len(index) != batch or len(unconds) != batch:
            raise ValueError(f"conditioning for {len(index)} prompts and {len(unconds)} negative prompts "
                             f"does not match a batch of {batch} latents")
        if self.blend is not None and self.blend_before:
            x = self.blend(x)

        repeats = [len(row) for row in index]
        padded = pad_to_same_length(conds + unconds)
        params = CFGDenoiserParams(
            x=_repeat_rows(x, repeats), image_cond=None if image_cond is None else _repeat_rows(image_cond, repeats),
            sigma=_repeat_rows(sigma, repeats), sampling_step=self.sampling_step,
            total_sampling_steps=self.total_steps, text_cond=torch.stack(padded[:len(conds)]),
            text_uncond=torch.stack(padded[len(conds):]), denoiser=self)
        for hook in self.hooks.on_cfg_denoiser:
            hook(params)

        skip_uncond = self.skips_uncond(float(sigma[0]), s_min_uncond)
        if skip_uncond:
            self.skipped_uncond_steps.append(self.step)
        n_cond = params.text_cond.shape[0]
        context = torch.cat(pad_to_same_length_batch(params.text_cond, params.text_uncond))
        rows = n_cond if skip_uncond else context.shape[0]
        image_cond_in = None if params.image_cond is None else params.image_cond[:rows]
        x_out = self._run_model(params.x[:rows], params.sigma[:rows], context[:rows], image_cond_in)
        if skip_uncond:  # stand-in: each image's first cond prediction, combined with scale 1
            x_out = torch.cat([x_out, x_out[[row[0][0] for row in index]]])

        denoised_params = CFGDenoisedParams(x_out, self.sampling_step, self.total_steps, self.inner_model)
        for hook in self.hooks.on_cfg_denoised:
            hook(denoised_params)
        x_out = denoised_params.x
        if self.check_nans and torch.isnan(x_out).any():
            raise NansError(NAN_MESSAGE)

        if self.keep_uncond:
            self.last_uncond = x_out[-batch:]
        scale = 1.0 if skip_uncond else cond_scale * self.cond_scale_multiplier
        denoised = combine_denoised(x_out, index, batch, scale)
        if self.blend is not None and not self.blend_before:
            denoised = self.blend(denoised)
        after = AfterCFGCallbackParams(denoised, self.sampling_step, self.total_steps)
        for hook in self.hooks.on_cfg_after_cfg:
            hook(after)
        self.last_denoised = after.x
        self.step += 1
        return after.x

    def skips_uncond(self, sigma: float, s_min_uncond: float) -> bool:
        """Whether this call runs without the negative prompt (then its stand-in is the first cond
        prediction, combined with scale 1), as A1111 1.10 decides:
        - "Skip Early CFG": the first skip_early_cond fraction of the calls;
        - "NGMS" (Negative Guidance minimum sigma, s_min_uncond): below that sigma, on every other
          call (every call with ngms_all_steps);
        never for CFG++ samplers, which need the unconditional prediction."""
        if self.keep_uncond:
            return False
        if self.skip_early_cond and self.step / max(self.total_steps, 1) <= self.skip_early_cond:
            self.infotext["Skip Early CFG"] = self.skip_early_cond
            return True
        if (self.step % 2 or self.ngms_all_steps) and s_min_uncond > 0 and sigma < s_min_uncond:
            self.infotext["NGMS"] = s_min_uncond
            if self.ngms_all_steps:
                self.infotext["NGMS all steps"] = True
            return True
        return False

    def _run_model(self, x, sigma, context, image_cond):
        rows = x.shape[0]
        step = self.max_batch or rows
        outs = []
        for a in range(0, rows, step):
            b = min(a + step, rows)
            c = context[a:b]
            cond = c if image_cond is None else {"c_crossattn": [c], "c_concat": [image_cond[a:b]]}
            outs.append(self.inner_model(x[a:b], sigma[a:b], cond=cond))
        return torch.cat(outs)


def pad_to_same_length_batch(cond: torch.Tensor, uncond: torch.Tensor) -> list[torch.Tensor]:
    """Batched (B, T, C) version of pad_to_same_length, for tensors a hook may have replaced."""
    if cond.shape[1] == uncond.shape[1]:
        return [cond, uncond]
    longest = max(cond.shape[1], uncond.shape[1])
    return [torch.cat([t, t[:, -1:].expand(-1, longest - t.shape[1], -1)], dim=1) for t in (cond, uncond)]


def combine_denoised(x_out: torch.Tensor, index: list[list[tuple[int, float]]], batch: int,
                     cond_scale: float) -> torch.Tensor:
    """uncond + sum_i (cond_i - uncond) * w_i * cond_scale per image; the last `batch` rows of x_out
    are the unconds."""
    denoised_uncond = x_out[-batch:]
    denoised = denoised_uncond.clone()
    for i, row in enumerate(index):
        for cond_index, weight in row:
            denoised[i] += (x_out[cond_index] - denoised_uncond[i]) * (weight * cond_scale)
    return denoised
