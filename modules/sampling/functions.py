"""Samplers k-diffusion lacks, written with its interface `sample_x(model, x, sigmas, extra_args,
callback, disable, ...)` so the sampler table treats them like its own."""
from __future__ import annotations

import torch
from k_diffusion.sampling import default_noise_sampler, get_ancestral_step, get_sigmas_karras, to_d
from tqdm.auto import tqdm, trange


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                noise_sampler=None):
    """DDIM (Song et al. 2021) in k-diffusion's variables.

    With x = x0 + sigma * eps (x_t / sqrt(alpha_bar_t)), DDIM's update
    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z, s = eta sqrt((1-a_prev)/(1-a)) sqrt(1-a/a_prev),
    divided by sqrt(a_prev) is an Euler step to sigma_down plus noise of std sigma_up, where
    (sigma_down, sigma_up) is k-diffusion's ancestral split with the same eta. eta = 0 is plain DDIM.
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if eta == 0 or sigmas[i + 1] == 0:
            sigma_down, sigma_up = sigmas[i + 1], 0.0
        else:
            sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigma_up:
            if noise_sampler is None:
                noise_sampler = default_noise_sampler(x)
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent Consistency Model sampling (Luo et al. 2023): jump to the prediction, re-noise to the
    next level."""
    return lcm_steps(model, x, sigmas, extra_args, callback, disable, noise_sampler,
                     renoise=lambda x0, sigma, noise: x0 + sigma * noise)


def lcm_steps(model, x, sigmas, extra_args, callback, disable, noise_sampler, renoise):
    """LCM's loop: x = the prediction, then renoise(x0, next sigma, noise) while the next sigma is > 0
    (x0 + sigma * noise on SD's noise levels; the flow path's own form for rectified flow)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = renoise(x, sigmas[i + 1], noise_sampler(sigmas[i], sigmas[i + 1]))
    return x


@torch.no_grad()
def sample_plms(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """PLMS, the pseudo linear multistep method of Liu et al. 2022 ("Pseudo Numerical Methods for
    Diffusion Models on Manifolds", eq. 12), as CompVis' PLMSSampler runs it.

    In k-diffusion's variables a DDIM (eta 0) step is an Euler step of d = (x - denoised) / sigma, so
    PLMS is Adams-Bashforth on d: the first step uses the pseudo improved Euler (d + d at the Euler
    point) / 2 (one extra model call), then orders 2, 3 and 4: (3d - d'), (23d - 16d' + 5d'') / 12,
    (55d - 59d' + 37d'' - 9d''') / 24. `old` keeps the raw d of earlier steps, as the original.
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    old: list[torch.Tensor] = []
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], denoised)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        dt = sigmas[i + 1] - sigmas[i]
        if not old and sigmas[i + 1] > 0:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            d_prime = (d + d_2) / 2
        elif len(old) == 0:
            d_prime = d
        elif len(old) == 1:
            d_prime = (3 * d - old[-1]) / 2
        elif len(old) == 2:
            d_prime = (23 * d - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            d_prime = (55 * d - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        old = (old + [d])[-3:]
        x = x + d_prime * dt
    return x


@torch.no_grad()
def sample_ddim_cfgpp(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                      noise_sampler=None):
    """DDIM with CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance",
    Algorithm 1): the guided prediction gives x0, the *unconditional* noise gives the direction back
    up to the next level: x_next = denoised + sigma_down * (x - denoised_uncond) / sigma (+ eta noise).

    The CFG denoiser keeps its last unconditional prediction in `model.last_uncond` (run_pass turns
    that on for samplers marked cfg_pp, and scales the guidance by 1 / 12.5 as A1111: CFG++ wants a
    scale in [0, 1]); a model without one (no CFG) makes this plain DDIM.
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        uncond = getattr(model, "last_uncond", None)
        uncond = denoised if uncond is None else uncond
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        if eta == 0 or sigmas[i + 1] == 0:
            sigma_down, sigma_up = sigmas[i + 1], 0.0
        else:
            sigma_down, sigma_up = get_ancestral_step(sigmas[i], sigmas[i + 1], eta=eta)
        x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
        if sigma_up:
            if noise_sampler is None:
                noise_sampler = default_noise_sampler(x)
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def restart_plan(sigmas: torch.Tensor) -> tuple[torch.Tensor, dict[int, tuple[int, int, float]]]:
    """A1111's choice of restarts for its "Restart" sampler: with 20 or more steps, one restart
    interval from sigma 0.1 back up to sigma 2 (9 steps; with 36 or more steps, two of steps // 4),
    and the main Karras schedule shortened so the total number of steps stays the same; fewer steps
    run without restarts. Returns (main sigmas, {index in them: (steps, times, sigma_max)})."""
    steps = len(sigmas) - 1
    if steps < 20:
        return sigmas, {}
    restart_steps, restart_times = (steps // 4, 2) if steps >= 36 else (9, 1)
    main = get_sigmas_karras(steps - restart_steps * restart_times, float(sigmas[-2]), float(sigmas[0]),
                             device=sigmas.device)
    return main, {int(torch.argmin((main - 0.1).abs())): (restart_steps + 1, restart_times, 2.0)}


@torch.no_grad()
def sample_restart(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
                   noise_sampler=None):
    """Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes",
    Algorithm 1): Heun steps of the probability-flow ODE down the schedule; on reaching a restart
    point sigma_min, add fresh noise back up to sigma_max (x + eps * sqrt(sigma_max^2 - sigma_min^2))
    and integrate the interval again (Karras sigmas) K times. The restarts contract the errors the
    ODE steps accumulated. Restart points as A1111's sampler of that name (restart_plan).
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    main, restarts = restart_plan(sigmas)
    pairs = []
    for i in range(len(main) - 1):
        pairs.append((main[i], main[i + 1]))
        if i + 1 in restarts:
            n, times, sigma_max = restarts[i + 1]
            top = int(torch.argmin((main - sigma_max).abs()))
            if top < i + 1:
                interval = get_sigmas_karras(n, float(main[i + 1]), float(main[top]), device=main.device)[:-1]
                pairs += list(zip(interval[:-1], interval[1:], strict=False)) * times
    last = None
    for step, (sigma, sigma_next) in enumerate(tqdm(pairs, disable=disable)):
        if last is not None and last < sigma:  # a restart: noise back up to sigma
            x = x + noise_sampler(last, sigma) * s_noise * (sigma ** 2 - last ** 2) ** 0.5
        denoised = model(x, sigma * s_in, **extra_args)
        d = to_d(x, sigma, denoised)
        if callback is not None:
            callback({"x": x, "i": step, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:  # Heun (Karras et al. 2022, Algorithm 1)
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigma_next, model(x_2, sigma_next * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
        last = sigma_next
    return x
