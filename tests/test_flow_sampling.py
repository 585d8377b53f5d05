"""Rectified-flow sampling (SD3 / SD3.5) against an exactly solvable flow model (Gaussian data, see
gaussian_model.FlowGaussianDataModel): the denoiser, the shifted schedules (diffusers' scheduler as
the reference), the deterministic samplers' answers, the flow forms of the noisy samplers, img2img
noising, and which samplers / schedule types a flow model is offered."""
import math

import pytest
import torch
from k_diffusion import sampling as k_sampling

from modules.models.family import FAMILIES
from modules.sampling import flow, rng, samplers
from modules.sampling.schedules import SCHEDULERS
from tests.gaussian_model import FlowGaussianDataModel

MU, S = 0.3, 0.5
SEEDS = [1, 2, 3, 4]


def plain(den):
    return lambda x, sigma, **kw: den(x, sigma, cond=None, **kw)


def run(info, model, steps, scheduler="automatic", options=None, seeds=SEEDS, shape=(4, 16, 16), denoiser=None):
    info = samplers.for_family(info, model.family)
    den = denoiser or samplers.make_denoiser(model)
    sigmas = samplers.get_sigmas(info, steps, den, scheduler)
    image_rng = rng.ImageRNG(shape, seeds)
    noise = image_rng.next()
    noise_sampler = samplers.make_noise_sampler(info, noise, sigmas, image_rng, seeds)
    out = samplers.sample(plain(den), noise, sigmas, info, noise_sampler=noise_sampler, options=options)
    return out, noise, sigmas


# --- the denoiser and the schedules ---------------------------------------------------------------------

def test_the_denoiser_is_x_minus_sigma_v_at_model_time_1000_sigma():
    model = FlowGaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    assert isinstance(den, flow.FlowDenoiser) and den.shift == 3.0
    x, sigma = torch.randn(2, 4, 8, 8), torch.tensor([0.9, 0.25])
    expected = model.exact_denoised(x, sigma, torch.full((2, 1, 1, 1), MU))
    assert torch.allclose(den(x, sigma, cond=None), expected, atol=1e-6)
    seen = []
    model.apply_model = lambda x, t, cond=None: seen.append(t) or torch.zeros_like(x)
    den(x, sigma, cond=None)
    assert torch.allclose(seen[0], torch.tensor([900.0, 250.0]))


@pytest.mark.parametrize("steps", [1, 4, 20, 28, 50])
def test_normal_schedule_is_diffusers_flow_match_euler_scheduler(steps):
    """"Normal" (also what Automatic means for a flow model) = Stability AI's reference schedule =
    diffusers' FlowMatchEulerDiscreteScheduler(shift=3.0): sigma(linspace(1, sigma(1/1000), N)), then 0."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    reference.set_timesteps(steps)
    den = samplers.make_denoiser(FlowGaussianDataModel())
    for sampler in ("Euler", "DPM++ 2M", "Euler a"):
        info = samplers.for_family(samplers.find_sampler(sampler), FAMILIES["sd3.5-medium"])
        for scheduler in ("Normal", "Automatic"):
            ours = samplers.get_sigmas(info, steps, den, scheduler)
            assert torch.allclose(ours, reference.sigmas.float(), atol=2e-6), (sampler, scheduler)
    assert abs(float(samplers.get_sigmas(info, 28, den, "Normal")[-2]) - 0.008929) < 1e-6  # shifted twice


def shifted(t, shift=3.0):
    return shift * t / (1 + (shift - 1) * t)


@pytest.mark.parametrize("steps", [3, 20])
def test_simple_sgm_uniform_uniform_and_beta_schedules(steps):
    den = samplers.make_denoiser(FlowGaussianDataModel())
    info = samplers.for_family(samplers.find_sampler("Euler"), FAMILIES["sd3"])
    table = [shifted(i / 1000) for i in range(1, 1001)]
    simple = samplers.get_sigmas(info, steps, den, "Simple")
    assert torch.allclose(simple[:-1], torch.tensor([table[-(1 + int(i * 1000 / steps))] for i in range(steps)]))
    sgm = samplers.get_sigmas(info, steps, den, "SGM Uniform")
    t = torch.linspace(1000, 1000 * table[0], steps + 1, dtype=torch.float64)[:-1]
    assert torch.allclose(sgm[:-1], shifted(t / 1000).float(), atol=1e-6)
    uniform = samplers.get_sigmas(info, steps, den, "Uniform")
    assert torch.allclose(uniform[:-1], shifted(torch.linspace(1, 0.001, steps, dtype=torch.float64)).float())
    for name in ("Simple", "SGM Uniform", "Uniform", "Beta", "Karras", "Exponential", "KL Optimal"):
        sigmas = samplers.get_sigmas(info, steps, den, name)
        assert float(sigmas[0]) == pytest.approx(1.0), name  # txt2img starts from pure noise
        assert bool((sigmas[:-1] > 0).all()) and bool((sigmas[1:] <= sigmas[:-1]).all()), name


def test_shift_override_changes_the_schedule():
    model = FlowGaussianDataModel()
    info = samplers.for_family(samplers.find_sampler("Euler"), model.family)
    three = samplers.get_sigmas(info, 10, samplers.make_denoiser(model), "Normal")
    one = samplers.get_sigmas(info, 10, samplers.make_denoiser(model, shift=1.0), "Normal")
    assert torch.allclose(one[:-1], torch.linspace(1, 0.001, 10), atol=1e-6)  # unshifted: linear in t
    assert bool((three[1:-1] > one[1:-1]).all())  # shift 3 spends more steps at high noise


# --- samplers against the exact answers ------------------------------------------------------------------

@pytest.mark.parametrize("name,steps,scheduler,tolerance", [
    ("Euler", 100, "Normal", 0.08), ("DDIM", 100, "Normal", 0.08), ("Heun", 30, "Normal", 0.005),
    ("LMS", 30, "Normal", 0.005), ("DPM2", 30, "Normal", 0.05), ("DPM++ 2M", 30, "Karras", 0.01),
    ("DPM++ 2M", 100, "Normal", 0.04), ("PLMS", 30, "Normal", 0.01), ("UniPC", 30, "Karras", 0.001),
    ("DDIM CFG++", 100, "Normal", 0.08)])
def test_deterministic_samplers_reach_the_ode_solution(name, steps, scheduler, tolerance):
    """From pure noise z every sample lands near mu + s * z, so the data's mean and spread come out.
    (DPM++ 2M and UniPC extrapolate the prediction in log sigma; the Normal schedule's last step spans a
    large log-sigma range, so there they need more steps than on Karras' - measured 0.35 and 0.48 off
    at 30 steps. DDIM CFG++ without CFG is Euler.)"""
    model = FlowGaussianDataModel(MU, S)
    out, noise, sigmas = run(samplers.find_sampler(name), model, steps, scheduler)
    assert float(sigmas[0]) == 1.0
    assert (out - model.ode_solution(noise, MU)).abs().max() < tolerance
    assert abs(out.mean() - MU) < 0.02 and abs(out.std() - S) < 0.02


def test_first_order_error_shrinks_with_steps():
    model = FlowGaussianDataModel(MU, S)
    errors = []
    for steps in (5, 20, 80):
        out, noise, _ = run(samplers.find_sampler("Euler"), model, steps)
        errors.append(float((out - model.ode_solution(noise, MU)).abs().max()))
    assert errors[0] > errors[1] > errors[2], errors


RF_NOISY = [("Euler a", 100), ("DPM2 a", 30), ("DPM++ 2S a", 30), ("DPM++ SDE", 30), ("DPM++ 2M SDE", 30),
            ("DPM++ 2M SDE Heun", 30), ("DPM++ 3M SDE", 30)]


@pytest.mark.parametrize("name,steps", RF_NOISY)
def test_flow_forms_of_the_noisy_samplers_keep_the_marginal_variance(name, steps):
    """Re-noising on the flow path (alpha = 1 - sigma) gives samples with the data's mean and spread;
    the samples differ from the ODE's (they are noisy samplers, eta = 1). On Karras sigmas (the
    multistep SDE samplers need more steps on Normal's, as DPM++ 2M does)."""
    model = FlowGaussianDataModel(MU, S)
    out, noise, _ = run(samplers.find_sampler(name), model, steps, "Karras")
    assert abs(out.mean() - MU) < 0.03 and abs(out.std() - S) < 0.03, (float(out.mean()), float(out.std()))
    assert (out - model.ode_solution(noise, MU)).abs().mean() > 0.1


@pytest.mark.parametrize("name,steps", [("Euler a", 100), ("DPM++ 2M SDE", 40)])
def test_the_variance_exploding_forms_would_add_too_much_noise(name, steps):
    """What the flow forms are for: k-diffusion's own functions on the same flow denoiser and sigmas
    come out about 40% too spread (measured 0.68 and 0.70 for a spread of 0.5)."""
    model = FlowGaussianDataModel(MU, S)
    info = samplers.find_sampler(name)
    den = samplers.make_denoiser(model)
    sigmas = samplers.get_sigmas(samplers.for_family(info, model.family), steps, den, "Karras")
    noise = rng.ImageRNG((4, 16, 16), SEEDS).next()
    kwargs = samplers.sampler_kwargs(info, sigmas)
    out = info.function(plain(den), noise, disable=True, **kwargs)
    assert out.std() > 1.25 * S


def test_ddim_eta_one_samples_the_data_and_eta_zero_is_euler():
    model = FlowGaussianDataModel(MU, S)
    ddim = samplers.find_sampler("DDIM")
    out, _, _ = run(ddim, model, 100, options=samplers.SamplerOptions(eta=1.0))
    assert abs(out.mean() - MU) < 0.03 and abs(out.std() - S) < 0.03
    eta0, _, _ = run(ddim, model, 12, options=samplers.SamplerOptions(eta=0.0))
    euler, _, _ = run(samplers.find_sampler("Euler"), model, 12)
    assert torch.allclose(eta0, euler, atol=1e-6)


def test_euler_a_with_eta_zero_is_euler():
    model = FlowGaussianDataModel(MU, S)
    a0, _, _ = run(samplers.find_sampler("Euler a"), model, 10, options=samplers.SamplerOptions(eta=0.0))
    euler, _, _ = run(samplers.find_sampler("Euler"), model, 10)
    assert torch.allclose(a0, euler, atol=1e-6)


def test_ancestral_step_keeps_the_data_scale_and_the_noise_std():
    """One step: x_next = scale * x_down + noise_std * z carries (1 - sigma_next) x0 and noise of
    std sigma_next when x_down carries (1 - sigma_down) x0 and sigma_down noise."""
    for sigma, sigma_next, eta in ((1.0, 0.8, 1.0), (0.9, 0.5, 1.0), (0.5, 0.1, 0.5), (0.3, 0.29, 1.0)):
        down, scale, std = flow.ancestral_step(sigma, sigma_next, eta)
        assert 0 <= down <= sigma_next
        assert scale * (1 - down) == pytest.approx(1 - sigma_next)
        assert math.hypot(scale * down, std) == pytest.approx(sigma_next)
    assert flow.ancestral_step(0.5, 0.3, 0.0) == (0.3, 1.0, 0.0)
    assert flow.ancestral_step(1.0, 0.8, 1.0)[0] == 0.0  # from pure noise, eta 1: all the way down (DDPM)


def test_lcm_renoises_on_the_flow_path():
    model = FlowGaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    info = samplers.for_family(samplers.find_sampler("LCM"), model.family)
    sigmas = torch.tensor([1.0, 0.5, 0.0])
    x = torch.randn(1, 4, 8, 8)
    z = torch.randn(1, 4, 8, 8)
    out = samplers.run_sampler(plain(den), x, sigmas[:2], info, noise_sampler=lambda a, b: z)
    d = den(x, torch.ones(1), cond=None)
    assert torch.allclose(out, 0.5 * d + 0.5 * z, atol=1e-6)


def test_img2img_starts_from_the_flow_mix_of_image_and_noise():
    model = FlowGaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    seen = []

    def recording(x, sigma, **kw):
        seen.append((x.clone(), float(sigma[0])))
        return den(x, sigma, cond=None)

    recording.inner_model = den
    init, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    info = samplers.for_family(samplers.find_sampler("Euler"), model.family)
    sigmas, t_enc = samplers.pass_sigmas(info, 10, den, "Normal", denoising_strength=0.4)
    samplers.sample_img2img(recording, init, noise, sigmas, info)
    sigma0 = float(sigmas[0])
    assert 0 < sigma0 < 1 and len(sigmas) == t_enc + 2
    assert torch.allclose(seen[0][0], (1 - sigma0) * init + sigma0 * noise, atol=1e-6)
    assert samplers.sample_img2img(recording, init, noise, sigmas[-1:], info) is init  # strength 0


# --- what a flow model is offered -----------------------------------------------------------------------

def test_samplers_and_schedules_without_a_flow_form_are_refused_with_the_reason():
    sd3 = FAMILIES["sd3.5-medium"]
    names = [s.name for s in samplers.available(sd3)]
    assert "DPM fast" not in names and "DPM adaptive" not in names and "Restart" not in names
    assert {"Euler a", "PLMS", "UniPC", "DDIM CFG++"} <= set(names)
    for name in ("DPM fast", "DPM adaptive"):
        with pytest.raises(ValueError, match="variance-exploding"):
            samplers.resolve_sampler_and_scheduler(name, None, family=sd3)
    with pytest.raises(ValueError, match="Restart sampler is not available for SD3.5 Medium"):
        samplers.resolve_sampler_and_scheduler("Restart", None, family=sd3)
    for label in ("Align Your Steps", "DDIM"):
        with pytest.raises(ValueError, match=f"{label} schedule type is not available for SD3.5 Medium"):
            samplers.resolve_sampler_and_scheduler("Euler", label, family=sd3)
    # the v1/v2 table is untouched
    info, scheduler = samplers.resolve_sampler_and_scheduler("DPM fast", "Align Your Steps",
                                                             family=FAMILIES["v1-inference"])
    assert info.function is k_sampling.sample_dpm_fast and scheduler.label == "Align Your Steps"


def test_a_flow_model_runs_the_flow_forms_and_automatic_means_its_own_schedule():
    sd3 = FAMILIES["sd3"]
    info, scheduler = samplers.resolve_sampler_and_scheduler("DPM++ 2M SDE", "Normal", family=sd3)
    assert info.function is not k_sampling.sample_dpmpp_2m_sde and scheduler.label == "Automatic"
    assert samplers.concrete_scheduler(info, scheduler).label == "Normal"
    info, scheduler = samplers.resolve_sampler_and_scheduler("DPM++ 2M", "Karras", family=sd3)
    assert info.function is k_sampling.sample_dpmpp_2m and scheduler.label == "Karras"  # exact for flow, kept
    unipc, automatic = samplers.resolve_sampler_and_scheduler("UniPC", None, family=sd3)
    assert samplers.concrete_scheduler(unipc, automatic, None).label == "Normal"  # not its VP skip types


def test_sigma_churn_is_refused_for_flow_models():
    model = FlowGaussianDataModel(MU, S)
    with pytest.raises(ValueError, match="sigma churn"):
        run(samplers.find_sampler("Euler"), model, 4, options=samplers.SamplerOptions(s_churn=1.0))


@pytest.mark.parametrize("sampler", [s.name for s in samplers.available(FAMILIES["sd3"])])
def test_sampler_by_schedule_matrix_on_a_tiny_sd3(sampler, tiny_sd3_denoiser):
    """Every sampler a flow model is offered, with every schedule type it is offered: finite latents of
    the right size from the tiny SD3 network (3 steps, CFG with an empty negative prompt)."""
    from modules.sampling.cfg_denoiser import CFGDenoiser

    den, cond, uncond = tiny_sd3_denoiser
    info = samplers.for_family(samplers.find_sampler(sampler), FAMILIES["sd3"])
    for scheduler in SCHEDULERS:
        if scheduler.not_for_flow:
            continue
        sigmas = samplers.get_sigmas(info, 3, den, scheduler.label)
        image_rng = rng.ImageRNG((16, 4, 4), [5])
        noise = image_rng.next()
        cfg = CFGDenoiser(den, 3)
        out = samplers.sample(cfg, noise, sigmas, info, extra_args={"cond": cond, "uncond": uncond, "cond_scale": 4.0},
                              noise_sampler=samplers.make_noise_sampler(info, noise, sigmas, image_rng, [5]))
        assert out.shape == (1, 16, 4, 4) and bool(torch.isfinite(out).all()), (sampler, scheduler.label)


@pytest.fixture(scope="module")
def tiny_sd3_denoiser():
    from modules.conditioning_sd3 import SD3PromptEncoder
    from tests.tiny_sd3 import make_tiny_sd3

    model = make_tiny_sd3(seed=2, encoders=("clip_l", "clip_g"))
    encoder = SD3PromptEncoder(model)
    return samplers.make_denoiser(model), encoder.multicond(["a red circle"], 6), encoder.scheduled([""], 6)



def test_ddim_cfgpp_flow_form_is_euler_without_cfg_and_takes_the_noise_from_the_uncond():
    from modules.sampling import flow_samplers

    model = FlowGaussianDataModel(MU, S)
    den = plain(samplers.make_denoiser(model))
    info = samplers.for_family(samplers.find_sampler("Euler"), model.family)
    sigmas = samplers.get_sigmas(info, 8, samplers.make_denoiser(model))
    x = torch.randn(1, 4, 8, 8)
    euler = samplers.run_sampler(den, x, sigmas, info)
    assert torch.allclose(flow_samplers.sample_ddim_cfgpp_rf(den, x, sigmas, disable=True), euler, atol=1e-5)

    def guided(x, sigma):  # a "guided" prediction 0.2 above the unconditional one
        guided.last_uncond = den(x, sigma)
        return guided.last_uncond + 0.2

    one = flow_samplers.sample_ddim_cfgpp_rf(guided, x, sigmas[-2:], disable=True)
    assert torch.allclose(one, guided.last_uncond + 0.2, atol=1e-6)  # the last step lands on the guided x0
    step = flow_samplers.sample_ddim_cfgpp_rf(guided, x, torch.tensor([1.0, 0.5]), disable=True)
    d_u = den(x, torch.ones(1))
    assert torch.allclose(step, 0.5 * (d_u + 0.2) + 0.5 * x, atol=1e-5)  # eps from sigma 1 is x itself
