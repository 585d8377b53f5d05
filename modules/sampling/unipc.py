"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models"), multistep, data prediction, written with k-diffusion's sampler interface.

The authors' code runs on VP marginals (alpha_t, sigma_t, lambda_t = log(alpha_t / sigma_t)). With
k-diffusion's x = x_t / alpha_t = x0 + sigma * eps its data-prediction updates are the same with
alpha = 1, sigma = k-diffusion's sigma and lambda = -log(sigma); so one function serves every
schedule type. Per step (eq. 8 / Algorithm 2 of the paper; variables as in the authors' code):

    predictor  x_t = sigma_t / sigma_s x - (e^-h - 1) m_s - B(h) sum_k rho^p_k D1_k
    corrector  x_t = sigma_t / sigma_s x - (e^-h - 1) m_s - B(h) (sum_k rho^c_k D1_k + rho^c_K (m_t - m_s))

with D1_k = (m_{s_k} - m_s) / r_k, r_k = (lambda_{s_k} - lambda_s) / h, and rho from R rho = b
(R_ik = r_k^(i-1), b_i = h phi_{i+1}(h) i! / B(h)); B(h) = h ("bh1") or e^h - 1 ("bh2"). The
corrector's model value m_t is kept as the next step's history, so each step costs one model call.
"vary_coeff" is the paper's other family (appendix: coefficients from the inverse of C_ik =
r_k^(i-1) / i!). A1111's settings: variant, order (3), lower_order_final (True), skip type.

A schedule that ends at sigma 0 (k-diffusion's convention) finishes with the last prediction, which
is the first-order step to sigma 0; the authors' schedules stop at t = 1/N without that step.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import trange

from modules.sampling.schedules import Scheduler

VARIANTS = ("bh1", "bh2", "vary_coeff")
SKIP_TYPES = ("time_uniform", "time_quadratic", "logSNR")


def _phis(hh: float, n: int) -> list[float]:
    """h phi_k(h) (k = 1..n) by the recursion phi_{k+1} = (phi_k - 1/k!) / h, times h."""
    out, value, factorial = [], math.expm1(hh), 1.0
    for k in range(1, n + 1):
        out.append(value)
        value = value / hh - 1 / factorial
        factorial *= k + 1
    return out


def _bh_coefficients(rks: list[float], hh: float, variant: str, order: int, predictor: bool):
    """(B(h), rho) of the B(h) variants: rho solves R rho = b (sizes order-1 for the predictor)."""
    b_h = hh if variant == "bh1" else math.expm1(hh)
    r = torch.tensor([[rk ** i for rk in rks] for i in range(order)], dtype=torch.float64)
    h_phi_k, factorial, b = math.expm1(hh) / hh - 1, 1.0, []
    for i in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    b = torch.tensor(b, dtype=torch.float64)
    if predictor:
        rho = torch.tensor([0.5], dtype=torch.float64) if order == 2 else torch.linalg.solve(r[:-1, :-1], b[:-1])
    else:
        rho = torch.tensor([0.5], dtype=torch.float64) if order == 1 else torch.linalg.solve(r, b)
    return b_h, rho


def _weighted(weights: torch.Tensor, d1s: list[torch.Tensor]) -> torch.Tensor | float:
    total = 0.0
    for w, d in zip(weights.tolist(), d1s, strict=False):
        total = total + w * d
    return total


class _UniPCStep:
    """One multistep update from the history (lambdas, model values) to sigma_t."""

    def __init__(self, variant: str):
        if variant not in VARIANTS:
            raise ValueError(f"unknown UniPC variant {variant!r}: use one of {', '.join(VARIANTS)}")
        self.variant = variant

    def __call__(self, x, lambdas, models, sigma_s, sigma_t, order, model_fn, use_corrector):
        lambda_s, m_s = lambdas[-1], models[-1]
        h = -math.log(sigma_t) - lambda_s
        rks = [(lambdas[-(i + 1)] - lambda_s) / h for i in range(1, order)]
        d1s = [(models[-(i + 1)] - m_s) / rk for i, rk in zip(range(1, order), rks, strict=False)]
        rks.append(1.0)
        hh = -h  # data prediction
        x_base = (sigma_t / sigma_s) * x - math.expm1(hh) * m_s
        if self.variant == "vary_coeff":
            return self._vary(x_base, rks, d1s, hh, m_s, model_fn, use_corrector)
        x_t = x_base
        if d1s:
            b_h, rho_p = _bh_coefficients(rks, hh, self.variant, order, predictor=True)
            x_t = x_base - b_h * _weighted(rho_p, d1s)
        if not use_corrector:
            return x_t, None
        b_h, rho_c = _bh_coefficients(rks, hh, self.variant, order, predictor=False)
        m_t = model_fn(x_t)
        correction = _weighted(rho_c[:-1], d1s) + float(rho_c[-1]) * (m_t - m_s)
        return x_base - b_h * correction, m_t

    @staticmethod
    def _vary(x_base, rks, d1s, hh, m_s, model_fn, use_corrector):
        k_total = len(rks)
        r = torch.tensor(rks, dtype=torch.float64)
        cols, col = [], torch.ones_like(r)
        for k in range(1, k_total + 1):
            cols.append(col)
            col = col * r / (k + 1)
        c = torch.stack(cols, dim=1)
        h_phi = _phis(hh, k_total + 1)
        x_t = x_base
        if d1s:
            a_p = torch.linalg.inv(c[:-1, :-1])
            for k in range(k_total - 1):
                x_t = x_t - h_phi[k + 1] * _weighted(a_p[k], d1s)
        if not use_corrector:
            return x_t, None
        a_c = torch.linalg.inv(c)
        m_t = model_fn(x_t)
        x_t = x_base
        k = 0
        for k in range(k_total - 1):
            x_t = x_t - h_phi[k + 1] * _weighted(a_c[k][:-1], d1s)
        # the authors' code weights the new value with the last row it used (k), kept as written
        return x_t - h_phi[k_total] * float(a_c[k][-1]) * (m_t - m_s), m_t


@torch.no_grad()
def sample_unipc(model, x, sigmas, extra_args=None, callback=None, disable=None, variant="bh1", order=3,
                 lower_order_final=True):
    """UniPC multistep (see the module docstring). order: the predictor's order (the corrector's is
    one more), warmed up from 1 and capped by the number of steps; lower_order_final lowers it over
    the last steps as the authors' code does."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    steps = len(sigmas) - 1
    order = max(1, min(int(order), steps))
    update = _UniPCStep(variant)
    denoised = model(x, sigmas[0] * s_in, **extra_args)
    lambdas, models = [-math.log(float(sigmas[0]))], [denoised]
    for i in trange(steps, disable=disable):
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": models[-1]})
        sigma_s, sigma_t = float(sigmas[i]), float(sigmas[i + 1])
        if sigma_t == 0:
            return models[-1]
        step_order = min(order, i + 1)
        if lower_order_final:
            step_order = min(step_order, steps - i)
        last = i + 1 == steps

        def model_fn(x_t, sigma=sigmas[i + 1]):
            return model(x_t, sigma * s_in, **extra_args)

        x, m_t = update(x, lambdas, models, sigma_s, sigma_t, step_order, model_fn, use_corrector=not last)
        if last:
            break
        lambdas = (lambdas + [-math.log(sigma_t)])[-order:]
        models = (models + [model_fn(x) if m_t is None else m_t])[-order:]
    return x


# -- A1111's "UniPC skip type": the t grid of the authors' code on the model's discrete schedule ----
def _vp_sigmas_at(t: torch.Tensor, inner_model) -> torch.Tensor:
    """k-diffusion sigma at continuous time t in (0, 1] (t = (index + 1) / 1000), the authors'
    NoiseScheduleVP('discrete'): log alpha interpolated piecewise linearly over the 1000 levels."""
    log_sigmas = inner_model.log_sigmas.double().cpu()
    n = len(log_sigmas)
    log_alphas = -0.5 * torch.log1p(log_sigmas.exp() ** 2)  # log sqrt(alpha_bar)
    grid = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)[1:]
    pos = (t.double() - grid[0]) / (grid[1] - grid[0])
    low = pos.floor().clamp(0, n - 2).long()
    w = pos - low
    log_alpha = log_alphas[low] * (1 - w) + log_alphas[low + 1] * w
    return (torch.expm1(-2 * log_alpha)).sqrt()


def skip_type_sigmas(skip_type: str):
    """A schedule function (schedules.py's signature) for A1111's uni_pc_skip_type: steps + 1 levels
    from t = 1 to t = 1/1000 evenly in t, in sqrt(t), or in log-SNR, with the last replaced by 0."""
    if skip_type not in SKIP_TYPES:
        raise ValueError(f"unknown UniPC skip type {skip_type!r}: use one of {', '.join(SKIP_TYPES)}")

    def schedule(n, sigma_min, sigma_max, inner_model, device="cpu"):
        t_end, t_start = 1.0 / len(inner_model.log_sigmas), 1.0
        if skip_type == "time_uniform":
            t = torch.linspace(t_start, t_end, n + 1, dtype=torch.float64)
            sigmas = _vp_sigmas_at(t, inner_model)
        elif skip_type == "time_quadratic":
            t = torch.linspace(t_start ** 0.5, t_end ** 0.5, n + 1, dtype=torch.float64) ** 2
            sigmas = _vp_sigmas_at(t, inner_model)
        else:
            ends = _vp_sigmas_at(torch.tensor([t_start, t_end], dtype=torch.float64), inner_model).log()
            sigmas = torch.linspace(float(ends[0]), float(ends[1]), n + 1, dtype=torch.float64).exp()
        sigmas[-1] = 0.0
        return sigmas.float().to(device)

    return schedule


def automatic_scheduler(opts) -> Scheduler:
    """What "Automatic" means for UniPC: the skip type setting (A1111's uni_pc_skip_type)."""
    skip_type = getattr(opts, "uni_pc_skip_type", "time_uniform") if opts is not None else "time_uniform"
    return Scheduler(f"unipc_{skip_type}", "Automatic", skip_type_sigmas(skip_type))
