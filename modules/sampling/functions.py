"""Samplers k-diffusion lacks, written with its interface `sample_x(model, x, sigmas, extra_args,
callback, disable, ...)` so the sampler table treats them like its own."""
from __future__ import annotations

import torch
from k_diffusion.sampling import default_noise_sampler, get_ancestral_step, to_d
from tqdm.auto import trange


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
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x
