"""The rectified-flow forms of the samplers that add noise (ancestral, SDE, DDIM with eta, LCM).

k-diffusion's deterministic samplers solve the flow ODE as they are (see flow.py); its noisy ones
re-noise as x0 + sigma * noise, which on a flow path (where the data is scaled by alpha = 1 - sigma)
adds far too much noise. These keep k-diffusion's signatures and ODE steps and re-noise on the flow
path:
- ancestral samplers (Euler a, DPM2 a, DPM++ 2S a, DDIM with eta): the ODE step goes to sigma_down,
  then x = scale * x + noise_std * noise (flow.ancestral_step: DDPM's split taken in x / alpha);
- SDE samplers (DPM++ SDE, DPM++ 2M SDE, DPM++ 3M SDE): DPM-Solver++'s SDE updates for a general
  alpha (Lu et al. 2022, "DPM-Solver++", sec. 4 / appendix: x_t = sigma_t / sigma_s e^(-eta h) x_s +
  alpha_t (1 - e^(-(1 + eta) h)) D + sigma_t sqrt(1 - e^(-2 eta h)) z, h = lambda_t - lambda_s,
  lambda = log(alpha / sigma)), which k-diffusion writes for alpha = 1; here alpha = 1 - sigma. A step
  from sigma 1 has h infinite: it draws x_next = alpha_next * D + sigma_next * z (the first-order limit);
- LCM: jump to the prediction, re-noise to (1 - sigma_next) * D + sigma_next * z.
"""
from __future__ import annotations

import math

import torch
from k_diffusion.sampling import BrownianTreeNoiseSampler, default_noise_sampler, to_d
from tqdm.auto import trange

from modules.sampling.flow import ancestral_step, half_log_snr, sigma_of_half_log_snr
from modules.sampling.functions import lcm_steps


def _euler(model, x, sigma, sigma_down, denoised, extra_args, s_in):
    """The flow ODE's Euler step (exact for a fixed prediction)."""
    return x + to_d(x, sigma, denoised) * (sigma_down - sigma)


def _dpm2(model, x, sigma, sigma_down, denoised, extra_args, s_in):
    """k-diffusion's DPM-Solver-2 step (midpoint in log sigma) of the same ODE."""
    if sigma_down == 0:
        return _euler(model, x, sigma, sigma_down, denoised, extra_args, s_in)
    sigma_mid = sigma.log().lerp(sigma_down.log(), 0.5).exp()
    x_2 = x + to_d(x, sigma, denoised) * (sigma_mid - sigma)
    denoised_2 = model(x_2, sigma_mid * s_in, **extra_args)
    return x + to_d(x_2, sigma_mid, denoised_2) * (sigma_down - sigma)


def _dpmpp_2s(model, x, sigma, sigma_down, denoised, extra_args, s_in):
    """k-diffusion's DPM-Solver++(2S) step (t = -log sigma) of the same ODE."""
    if sigma_down == 0:
        return _euler(model, x, sigma, sigma_down, denoised, extra_args, s_in)
    t, t_next = -sigma.log(), -sigma_down.log()
    h = t_next - t
    sigma_s = (-(t + h / 2)).exp()
    x_2 = (sigma_s / sigma) * x - (-h / 2).expm1() * denoised
    denoised_2 = model(x_2, sigma_s * s_in, **extra_args)
    return (sigma_down / sigma) * x - (-h).expm1() * denoised_2


def _ancestral(ode_step, name: str, default_eta: float = 1.0):
    @torch.no_grad()
    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=default_eta, s_noise=1.0,
               noise_sampler=None):
        extra_args = {} if extra_args is None else extra_args
        noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
        s_in = x.new_ones([x.shape[0]])
        for i in trange(len(sigmas) - 1, disable=disable):
            denoised = model(x, sigmas[i] * s_in, **extra_args)
            if callback is not None:
                callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
            sigma_down, scale, noise_std = ancestral_step(sigmas[i], sigmas[i + 1], eta)
            x = ode_step(model, x, sigmas[i], sigmas.new_tensor(sigma_down), denoised, extra_args, s_in)
            if noise_std > 0:
                x = scale * x + noise_sampler(sigmas[i], sigmas[i + 1]) * (s_noise * noise_std)
        return x

    sample.__name__ = sample.__qualname__ = name
    sample.__doc__ = f"{name}: the ODE step ({ode_step.__name__}) to sigma_down, then flow re-noising."
    return sample


sample_euler_ancestral_rf = _ancestral(_euler, "sample_euler_ancestral_rf")
sample_dpm_2_ancestral_rf = _ancestral(_dpm2, "sample_dpm_2_ancestral_rf")
sample_dpmpp_2s_ancestral_rf = _ancestral(_dpmpp_2s, "sample_dpmpp_2s_ancestral_rf")
# DDIM (Song et al. 2021) is an Euler step to sigma_down plus noise: the same sampler with eta 0 by default
sample_ddim_rf = _ancestral(_euler, "sample_ddim_rf", default_eta=0.0)


@torch.no_grad()
def sample_lcm_rf(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Latent Consistency Model sampling on a flow path: re-noised to (1 - sigma) x0 + sigma noise."""
    return lcm_steps(model, x, sigmas, extra_args, callback, disable, noise_sampler,
                     renoise=lambda x0, sigma, noise: (1 - sigma) * x0 + sigma * noise)


def _brownian(x, sigmas, noise_sampler):
    if noise_sampler is not None:
        return noise_sampler
    positive = sigmas[sigmas > 0]
    return BrownianTreeNoiseSampler(x, positive.min(), positive.max())


class _SDEStep:
    """Scalars of one DPM-Solver++ SDE step from sigma to sigma_next on a flow path (floats)."""

    def __init__(self, sigma: float, sigma_next: float, eta: float):
        self.h = half_log_snr(sigma_next) - half_log_snr(sigma)
        self.eta_h = eta * self.h if eta else 0.0
        self.alpha_next = 1.0 - sigma_next
        # x coefficient sigma_t / sigma_s e^(-eta h) (0 from sigma 1 when eta > 0)
        self.x_coef = sigma_next / sigma * math.exp(-self.eta_h)
        self.d_coef = self.alpha_next * -math.expm1(-self.h - self.eta_h)  # alpha_t (1 - e^(-(1+eta) h))
        self.noise_std = sigma_next * math.sqrt(-math.expm1(-2 * self.eta_h)) if eta else 0.0


@torch.no_grad()
def sample_dpmpp_2m_sde_rf(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None, solver_type="midpoint"):
    """DPM-Solver++(2M) SDE on a flow path (k-diffusion's sample_dpmpp_2m_sde with alpha = 1 - sigma)."""
    if solver_type not in ("heun", "midpoint"):
        raise ValueError("solver_type must be 'heun' or 'midpoint'")
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian(x, sigmas, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    old_denoised, h_last = None, None
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if sigma_next == 0:
            x = denoised
            continue
        step = _SDEStep(sigma, sigma_next, eta)
        x = step.x_coef * x + step.d_coef * denoised
        if old_denoised is not None and math.isfinite(h_last):
            r = h_last / step.h
            if solver_type == "heun":
                phi = -math.expm1(-step.h - step.eta_h) / (-step.h - step.eta_h) + 1
                x = x + step.alpha_next * phi / r * (denoised - old_denoised)
            else:
                x = x + 0.5 * step.d_coef / r * (denoised - old_denoised)
        if step.noise_std:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * (step.noise_std * s_noise)
        old_denoised, h_last = denoised, step.h
    return x


@torch.no_grad()
def sample_dpmpp_3m_sde_rf(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None):
    """DPM-Solver++(3M) SDE on a flow path (k-diffusion's sample_dpmpp_3m_sde with alpha = 1 - sigma)."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian(x, sigmas, noise_sampler)
    s_in = x.new_ones([x.shape[0]])
    history: list[tuple[torch.Tensor, float]] = []  # (denoised, h) of the previous steps, newest first
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if sigma_next == 0:
            x = denoised
            continue
        step = _SDEStep(sigma, sigma_next, eta)
        h, h_eta = step.h, step.h + step.eta_h
        x = step.x_coef * x + step.d_coef * denoised
        usable = [(d, hh) for d, hh in history if math.isfinite(hh)]
        if usable:
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if len(usable) >= 2:
                (d_1, h_1), (d_2, h_2) = usable[0], usable[1]
                r0, r1 = h_1 / h, h_2 / h
                d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_3 = phi_2 / h_eta - 0.5
                x = x + step.alpha_next * (phi_2 * d1 - phi_3 * d2)
            else:
                d_1, h_1 = usable[0]
                x = x + step.alpha_next * phi_2 * (denoised - d_1) / (h_1 / h)
        if step.noise_std:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * (step.noise_std * s_noise)
        history = [(denoised, h)] + history[:1]
    return x


@torch.no_grad()
def sample_dpmpp_sde_rf(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None, r=1 / 2):
    """DPM-Solver++ (stochastic, two stages) on a flow path: k-diffusion's sample_dpmpp_sde with the
    stage point at a fraction r of the step in lambda = log((1 - sigma) / sigma) and flow re-noising
    (flow.ancestral_step). The step from sigma 1 (lambda -inf: no interior point) is an Euler a step."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _brownian(x, sigmas, noise_sampler)
    s_in = x.new_ones([x.shape[0]])

    def to_level(x, sigma, target, denoised):
        sigma_down, scale, noise_std = ancestral_step(sigma, target, eta)
        x = _euler(model, x, sigma, sigmas.new_tensor(sigma_down), denoised, extra_args, s_in)
        if noise_std > 0:
            x = scale * x + noise_sampler(sigma, sigmas.new_tensor(target)) * (s_noise * noise_std)
        return x

    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        if sigma_next == 0 or sigma >= 1.0:
            x = to_level(x, sigmas[i], sigma_next, denoised)
            continue
        lam = half_log_snr(sigma)
        sigma_s = sigma_of_half_log_snr(lam + r * (half_log_snr(sigma_next) - lam))
        x_2 = to_level(x, sigmas[i], sigma_s, denoised)
        denoised_2 = model(x_2, sigmas.new_tensor(sigma_s) * s_in, **extra_args)
        fac = 1 / (2 * r)
        x = to_level(x, sigmas[i], sigma_next, (1 - fac) * denoised + fac * denoised_2)
    return x


@torch.no_grad()
def sample_ddim_cfgpp_rf(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=0.0, s_noise=1.0,
                         noise_sampler=None):
    """DDIM CFG++ (Chung et al. 2024, Algorithm 1) on a flow path: the guided prediction D gives x0, the
    unconditional one D_u the noise, eps = (x - (1 - sigma) D_u) / sigma, and x_down = (1 - sigma_down) D
    + sigma_down eps (then flow re-noising with eta). Without CFG (no `model.last_uncond`) it is Euler."""
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        uncond = getattr(model, "last_uncond", None)
        uncond = denoised if uncond is None else uncond
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        sigma_down, scale, noise_std = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        eps = (x - (1 - sigmas[i]) * uncond) / sigmas[i]
        x = (1 - sigma_down) * denoised + sigma_down * eps
        if noise_std > 0:
            x = scale * x + noise_sampler(sigmas[i], sigmas[i + 1]) * (s_noise * noise_std)
    return x
