"""Samplers and schedules against an exactly solvable model (Gaussian data, see gaussian_model.py)."""
import math

import pytest
import torch
from k_diffusion import external as k_external
from k_diffusion import sampling as k_sampling

from modules.cond_schedule import MultiCond, ScheduledCond
from modules.sampling import rng, samplers
from modules.sampling.cfg_denoiser import CFGDenoiser, CFGHooks
from modules.sampling.schedules import find_scheduler
from tests.gaussian_model import GaussianDataModel

MU, S = 0.3, 0.5
SEEDS = [11, 12]


def plain(model):
    """The k-diffusion denoiser without conditioning (mu = MU)."""
    den = samplers.make_denoiser(model)
    return lambda x, sigma: den(x, sigma, cond=None)


def empty_conds(batch, length=77, dim=8):
    zero = torch.zeros(length, dim)
    cond = MultiCond([[(ScheduledCond([(100, zero)]), 1.0)] for _ in range(batch)])
    return cond, [ScheduledCond([(100, zero)]) for _ in range(batch)]


def run(info, model, steps, scheduler="automatic", options=None, seeds=SEEDS, shape=(4, 16, 16)):
    den = samplers.make_denoiser(model)
    sigmas = samplers.get_sigmas(info, steps, den, scheduler)
    image_rng = rng.ImageRNG(shape, seeds)
    noise = image_rng.next()
    noise_sampler = samplers.make_noise_sampler(info, noise * sigmas[0], sigmas, image_rng, seeds)
    out = samplers.sample(plain(model), noise, sigmas, info, noise_sampler=noise_sampler, options=options)
    return out, noise, sigmas


# --- accuracy against the exact answers -------------------------------------------------------------

DETERMINISTIC_HIGH_ORDER = ["DPM++ 2M", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 3M SDE", "DPM++ SDE",
                            "DPM++ 2S a", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast"]


@pytest.mark.parametrize("name", DETERMINISTIC_HIGH_ORDER)
def test_deterministic_samplers_solve_the_probability_flow_ode(name):
    """eta = 0: every sample lands where the exact ODE solution puts it."""
    model = GaussianDataModel(MU, S)
    out, noise, sigmas = run(samplers.find_sampler(name), model, 30, "karras",
                             samplers.SamplerOptions(eta=0.0))
    exact = model.ode_solution(noise * sigmas[0], float(sigmas[0]), MU)
    assert (out - exact).abs().max() < 0.02
    target_std = S * float(sigmas[0]) / math.sqrt(S**2 + float(sigmas[0]) ** 2)
    assert abs(out.mean() - MU) < 0.05 and abs(out.std() - target_std) < 0.03


@pytest.mark.parametrize("name", ["Euler", "DDIM"])
def test_first_order_samplers_converge(name):
    model = GaussianDataModel(MU, S)
    errors = []
    for steps in (10, 30, 100):
        out, noise, sigmas = run(samplers.find_sampler(name), model, steps, "karras")
        errors.append(float((out - model.ode_solution(noise * sigmas[0], float(sigmas[0]), MU)).abs().max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.05, errors


def test_dpm_adaptive_meets_its_tolerance():
    model = GaussianDataModel(MU, S)
    out, noise, sigmas = run(samplers.find_sampler("DPM adaptive"), model, 20, options=samplers.SamplerOptions(eta=0))
    assert (out - model.ode_solution(noise * sigmas[0], float(sigmas[0]), MU)).abs().max() < 0.06


@pytest.mark.parametrize("name,steps", [("Euler a", 100), ("DPM2 a", 30), ("DPM++ 2S a", 30), ("DPM++ SDE", 30),
                                        ("DPM++ 2M SDE", 30), ("DPM++ 3M SDE", 30), ("DPM fast", 30)])
def test_stochastic_samplers_sample_the_data_distribution(name, steps):
    """Started from pure noise, the samples have the data's mean and spread (first-order Euler a
    needs more steps for its bias to vanish)."""
    model = GaussianDataModel(MU, S)
    out, _, _ = run(samplers.find_sampler(name), model, steps, "karras", seeds=[1, 2, 3, 4])
    assert abs(out.mean() - MU) < 0.04 and abs(out.std() - S) < 0.04


def test_ddim_with_eta_one_samples_the_data_distribution():
    model = GaussianDataModel(MU, S)
    out, _, _ = run(samplers.find_sampler("DDIM"), model, 100, options=samplers.SamplerOptions(eta=1.0),
                    seeds=[1, 2, 3, 4])
    assert abs(out.mean() - MU) < 0.04 and abs(out.std() - S) < 0.04


def test_eps_and_v_models_give_the_same_image():
    eps_out, _, _ = run(samplers.find_sampler("DPM++ 2M"), GaussianDataModel(MU, S, "eps"), 12)
    v_out, _, _ = run(samplers.find_sampler("DPM++ 2M"), GaussianDataModel(MU, S, "v"), 12)
    assert torch.allclose(eps_out, v_out, atol=1e-4)


def test_denoiser_wrappers_are_k_diffusions():
    assert isinstance(samplers.make_denoiser(GaussianDataModel(parameterization="eps")), k_external.CompVisDenoiser)
    assert isinstance(samplers.make_denoiser(GaussianDataModel(parameterization="v")), k_external.CompVisVDenoiser)
    with pytest.raises(ValueError, match="parameterization"):
        samplers.make_denoiser(GaussianDataModel(parameterization="x0"))


# --- options -----------------------------------------------------------------------------------------

def test_eta_reaches_the_sampler():
    """Euler a with eta 0 is exactly Euler; the default eta 1 adds noise."""
    model = GaussianDataModel(MU, S)
    euler, _, _ = run(samplers.find_sampler("Euler"), model, 10)
    euler_a0, _, _ = run(samplers.find_sampler("Euler a"), model, 10, options=samplers.SamplerOptions(eta=0.0))
    euler_a, _, _ = run(samplers.find_sampler("Euler a"), model, 10)
    assert torch.equal(euler, euler_a0) and not torch.allclose(euler, euler_a, atol=1e-2)


def test_churn_and_noise_options_reach_euler():
    model = GaussianDataModel(MU, S)
    base, _, _ = run(samplers.find_sampler("Euler"), model, 10)
    churned, _, _ = run(samplers.find_sampler("Euler"), model, 10,
                        options=samplers.SamplerOptions(s_churn=1.0, s_tmax=20.0))
    assert not torch.allclose(base, churned, atol=1e-3)


def test_sampler_kwargs_fit_each_signature():
    sigmas = torch.tensor([10.0, 5.0, 1.0, 0.0])
    fast = samplers.sampler_kwargs(samplers.find_sampler("DPM fast"), sigmas)
    assert fast == {"sigma_min": 1.0, "sigma_max": 10.0, "n": 3, "eta": 1.0, "s_noise": 1.0}
    ddim = samplers.sampler_kwargs(samplers.find_sampler("DDIM"), sigmas)
    assert ddim["eta"] == 0.0 and ddim["sigmas"] is sigmas
    heun = samplers.sampler_kwargs(samplers.find_sampler("DPM++ 2M SDE Heun"), sigmas)
    assert heun["solver_type"] == "heun"


def test_infotext_params_name_only_changed_options():
    euler_a = samplers.find_sampler("Euler a")
    assert samplers.infotext_params(euler_a, samplers.SamplerOptions()) == {}
    assert samplers.infotext_params(euler_a, samplers.SamplerOptions(eta=0.5)) == {"Eta": 0.5}
    assert samplers.infotext_params(samplers.find_sampler("DDIM"), samplers.SamplerOptions(eta=0.5)) == {"Eta DDIM": 0.5}
    euler = samplers.infotext_params(samplers.find_sampler("Euler"), samplers.SamplerOptions(s_churn=2, s_noise=1.01))
    assert euler == {"Sigma churn": 2, "Sigma noise": 1.01}


# --- names -------------------------------------------------------------------------------------------

def test_names_and_aliases_case_insensitive():
    assert samplers.find_sampler("k_euler_a").name == "Euler a"
    assert samplers.find_sampler("EULER A").name == "Euler a"
    assert samplers.find_sampler("euler_ancestral").name == "Euler a"
    assert samplers.find_sampler("k_dpmpp_2m").name == "DPM++ 2M"
    assert samplers.find_sampler("ddim").name == "DDIM"
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        samplers.find_sampler("nope")


def test_old_combined_names_split_like_a1111():
    info, sched = samplers.resolve_sampler_and_scheduler("DPM++ 2M Karras")
    assert (info.name, sched.label) == ("DPM++ 2M", "Automatic")  # Karras is 2M's default
    info, sched = samplers.resolve_sampler_and_scheduler("Euler a Karras")
    assert (info.name, sched.label) == ("Euler a", "Karras")
    info, sched = samplers.resolve_sampler_and_scheduler("DPM++ 2M", "exponential")
    assert sched.label == "Exponential"
    info, sched = samplers.resolve_sampler_and_scheduler(None, None)
    assert (info.name, sched.label) == ("Euler a", "Automatic")


def test_scheduler_lookup():
    assert find_scheduler("karras").label == "Karras"
    assert find_scheduler("SGM Uniform").name == "sgm_uniform"
    assert find_scheduler("SGMUniform").name == "sgm_uniform"
    assert find_scheduler(None).label == "Automatic"
    with pytest.raises(ValueError, match="unknown schedule type"):
        find_scheduler("wobbly")


# --- schedules ---------------------------------------------------------------------------------------

def test_schedules_use_the_models_noise_levels():
    den = samplers.make_denoiser(GaussianDataModel())
    sigma_min, sigma_max = float(den.sigmas[0]), float(den.sigmas[-1])
    euler = samplers.find_sampler("Euler")
    karras = samplers.get_sigmas(euler, 10, den, "karras")
    assert torch.allclose(karras, k_sampling.get_sigmas_karras(10, sigma_min, sigma_max))
    assert karras[0] == pytest.approx(14.6146, abs=1e-3) and karras[-2] == pytest.approx(0.02916, abs=1e-4)
    assert torch.allclose(samplers.get_sigmas(euler, 10, den, "automatic"), den.get_sigmas(10))
    assert torch.allclose(samplers.get_sigmas(euler, 10, den, "uniform"), den.get_sigmas(10))
    exponential = samplers.get_sigmas(euler, 10, den, "exponential")
    assert torch.allclose(exponential.log()[:-1].diff(), exponential.log()[:-1].diff()[:1].expand(9), atol=1e-4)
    sgm = samplers.get_sigmas(euler, 10, den, "sgm_uniform")
    assert sgm[0] == pytest.approx(sigma_max, rel=1e-4) and sgm[-2] > den.sigmas[99]
    ddim = samplers.get_sigmas(samplers.find_sampler("DDIM"), 20, den)  # Automatic = DDIM timesteps
    assert torch.allclose(ddim[:-1], den.sigmas[torch.arange(951, 0, -50)])


def test_automatic_is_the_samplers_default_and_discard_penultimate():
    den = samplers.make_denoiser(GaussianDataModel())
    dpm2 = samplers.find_sampler("DPM2")
    sigmas = samplers.get_sigmas(dpm2, 10, den)
    karras11 = samplers.get_sigmas(samplers.find_sampler("Euler"), 11, den, "karras")
    assert sigmas.shape == (11,) and torch.allclose(sigmas, torch.cat([karras11[:-2], karras11[-1:]]))
    forced = samplers.get_sigmas(samplers.find_sampler("Euler"), 10, den, always_discard_next_to_last_sigma=True)
    assert forced.shape == (11,)


# --- img2img -----------------------------------------------------------------------------------------

def test_img2img_steps_like_a1111():
    assert samplers.img2img_steps(20, 0.5) == (20, 10)
    assert samplers.img2img_steps(20, 0.75) == (20, 15)
    assert samplers.img2img_steps(20, 1.0) == (20, 19)  # strength is capped at 0.999
    assert samplers.img2img_steps(20, 0.5, fix_steps=True) == (40, 19)
    assert samplers.img2img_steps(20, 0.0) == (20, -1)


def test_img2img_starts_part_way_down_and_solves_from_there():
    model = GaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    info = samplers.find_sampler("DPM++ 2M")
    total, t_enc = samplers.img2img_steps(30, 0.5)
    sigmas = samplers.img2img_sigmas(samplers.get_sigmas(info, total, den), total, t_enc)
    assert len(sigmas) == t_enc + 2  # A1111 runs t_enc + 1 steps
    init_latent = torch.full((1, 4, 16, 16), -1.0)
    noise = rng.ImageRNG((4, 16, 16), [5]).next()
    steps_run = []
    out = samplers.sample_img2img(plain(model), init_latent, noise, sigmas, info,
                                  callback=lambda d: steps_run.append(d["i"]))
    assert steps_run == list(range(t_enc + 1))
    exact = model.ode_solution(init_latent + noise * sigmas[0], float(sigmas[0]), MU)
    assert (out - exact).abs().max() < 0.02


def test_img2img_with_strength_zero_returns_the_input():
    model = GaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    info = samplers.find_sampler("Euler a")
    total, t_enc = samplers.img2img_steps(20, 0.0)
    sigmas = samplers.img2img_sigmas(samplers.get_sigmas(info, total, den), total, t_enc)
    init_latent = torch.randn(1, 4, 8, 8)
    out = samplers.sample_img2img(plain(model), init_latent, torch.randn(1, 4, 8, 8), sigmas, info)
    assert torch.equal(out, init_latent) and model.calls == []


# --- reproducibility ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Euler a", "DPM++ SDE", "DPM++ 2M SDE"])
def test_an_image_is_the_same_alone_or_in_a_batch(name):
    """Per-image generators (ancestral) and per-image Brownian trees (SDE): image 2 of a batch equals
    the same seed generated alone."""
    info = samplers.find_sampler(name)
    model = GaussianDataModel(MU, S)
    batch, _, _ = run(info, model, 8, seeds=[100, 101])
    alone, _, _ = run(info, model, 8, seeds=[101])
    again, _, _ = run(info, model, 8, seeds=[100, 101])
    assert torch.equal(batch, again)
    assert torch.allclose(batch[1:], alone, atol=1e-5)


def test_interrupt_returns_the_last_denoised_within_a_step():
    model = GaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    info = samplers.find_sampler("Euler")
    sigmas = samplers.get_sigmas(info, 20, den)

    class Job:
        interrupted = False
        skipped = False

    job = Job()
    cfg = CFGDenoiser(den, 20, interrupt=job)
    seen = []

    def stop_at_step_5(d):
        seen.append(d["i"])
        if d["i"] == 5:
            job.interrupted = True

    cond, uncond = empty_conds(1, dim=1)
    out = samplers.sample(cfg, torch.randn(1, 4, 8, 8), sigmas, info, callback=stop_at_step_5,
                          extra_args={"cond": cond, "uncond": uncond, "cond_scale": 1.0})
    assert seen == [0, 1, 2, 3, 4, 5] and cfg.step == 6
    assert torch.equal(out, cfg.last_denoised)


def test_hooks_see_the_samplers_step():
    model = GaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    info = samplers.find_sampler("Heun")
    sigmas = samplers.get_sigmas(info, 5, den)
    seen = []
    cfg = CFGDenoiser(den, 5, hooks=CFGHooks(on_cfg_denoiser=[lambda p: seen.append(p.sampling_step)]))
    cond, uncond = empty_conds(1, dim=1)
    samplers.sample(cfg, torch.randn(1, 4, 8, 8), sigmas, info, callback=cfg.callback,
                    extra_args={"cond": cond, "uncond": uncond, "cond_scale": 1.0})
    # Heun: two calls per step except the last; the step shown is the sampler's, as A1111's state
    assert seen == [0, 0, 0, 1, 1, 2, 2, 3, 3] and cfg.step == 9
