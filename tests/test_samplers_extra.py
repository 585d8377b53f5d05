"""PLMS, UniPC, Restart and DDIM CFG++: against the exactly solvable Gaussian model and against
diffusers' PNDMScheduler / UniPCMultistepScheduler run on the same model."""

import pytest
import torch

from modules.sampling import functions, samplers, unipc
from modules.sampling.cfg_denoiser import CFGDenoiser
from tests.gaussian_model import GaussianDataModel
from tests.test_samplers import MU, S, empty_conds, plain, run

SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction"}


def _noise(shape=(2, 4, 8, 8), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()


def _ode_error(model, out, noise, sigmas):
    return float((out - model.ode_solution(noise * sigmas[0], float(sigmas[0]), MU)).abs().max())


# --- the probability-flow ODE, exactly ----------------------------------------------------------------

@pytest.mark.parametrize("parameterization", ["eps", "v"])
@pytest.mark.parametrize("name", ["PLMS", "UniPC"])
def test_new_samplers_solve_the_ode_on_eps_and_v_models(name, parameterization):
    model = GaussianDataModel(MU, S, parameterization)
    out, noise, sigmas = run(samplers.find_sampler(name), model, 20, "karras", samplers.SamplerOptions(eta=0.0))
    assert _ode_error(model, out, noise, sigmas) < 0.02


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_restart_below_20_steps_is_heun(parameterization):
    model = GaussianDataModel(MU, S, parameterization)
    ours, _, _ = run(samplers.find_sampler("Restart"), model, 15, "karras")
    heun, _, _ = run(samplers.find_sampler("Heun"), model, 15, "karras")
    assert torch.equal(ours, heun)


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_ddim_cfgpp_without_guidance_is_ddim(parameterization):
    model = GaussianDataModel(MU, S, parameterization)
    ours, _, _ = run(samplers.find_sampler("DDIM CFG++"), model, 10)
    ddim, _, _ = run(samplers.find_sampler("DDIM"), model, 10)
    assert torch.allclose(ours, ddim, atol=1e-5)


@pytest.mark.parametrize("variant", unipc.VARIANTS)
@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_variants_and_orders_converge(variant, order):
    """Every variant and order gets close to the exact answer with 20 steps. (Exactness per step
    against diffusers is checked below for bh1/bh2; vary_coeff is the authors' formula as written.
    Below ~40 steps the error here is dominated by the coarse steps, above by the final jump from
    sigma_min to 0, so the error is compared at 5 and 20 steps only.)"""
    model = GaussianDataModel(MU, S)
    info = samplers.find_sampler("UniPC")
    errors = []
    for steps in (5, 20):
        options = samplers.SamplerOptions(extra={"variant": variant, "order": order})
        out, noise, sigmas = run(info, model, steps, "karras", options)
        errors.append(_ode_error(model, out, noise, sigmas))
    assert errors[1] < errors[0] / 3 and errors[1] < 0.07, errors


def test_plms_is_more_accurate_than_ddim():
    model = GaussianDataModel(MU, S)
    plms = _ode_error(model, *run(samplers.find_sampler("PLMS"), model, 10))
    ddim = _ode_error(model, *run(samplers.find_sampler("DDIM"), model, 10))
    assert plms < ddim / 5, (plms, ddim)


def test_model_calls_per_step():
    """PLMS: one extra call for its first (improved Euler) step; UniPC: one per step (the corrector's
    model value is the next step's)."""
    for name, steps, calls in (("PLMS", 10, 11), ("UniPC", 10, 10), ("DDIM CFG++", 10, 10)):
        model = GaussianDataModel(MU, S)
        run(samplers.find_sampler(name), model, steps)
        assert len(model.calls) == calls, name


def test_unipc_skip_types_are_a1111s_grid():
    den = samplers.make_denoiser(GaussianDataModel(MU, S))
    uniform = unipc.skip_type_sigmas("time_uniform")(10, None, None, den)
    # t = 1 is the top training level, t = linspace(1, 1/1000) evenly in (index + 1) / 1000
    assert float(uniform[0]) == pytest.approx(float(den.sigmas[-1]), rel=1e-5)
    assert float(uniform[1]) == pytest.approx(float(den.t_to_sigma(torch.tensor(899.1))), rel=1e-4)
    assert float(uniform[-1]) == 0.0 and uniform.shape == (11,)
    log_snr = unipc.skip_type_sigmas("logSNR")(10, None, None, den)
    steps = log_snr[:-1].log().diff()
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-4)
    quadratic = unipc.skip_type_sigmas("time_quadratic")(10, None, None, den)
    assert torch.all(quadratic[:-1] > 0) and torch.all(quadratic[:-1].diff() < 0)


class _Opts:
    uni_pc_skip_type = "logSNR"
    uni_pc_variant = "bh2"
    uni_pc_order = 2
    uni_pc_lower_order_final = False


def test_unipc_automatic_schedule_and_options_follow_the_settings():
    info = samplers.find_sampler("UniPC")
    scheduler = samplers.concrete_scheduler(info, "automatic", _Opts())
    den = samplers.make_denoiser(GaussianDataModel(MU, S))
    assert torch.equal(samplers.get_sigmas(info, 6, den, scheduler), unipc.skip_type_sigmas("logSNR")(6, 0, 0, den))
    extra = samplers.options_from_settings(info, _Opts())
    assert extra == {"variant": "bh2", "order": 2, "lower_order_final": False}
    kwargs = samplers.sampler_kwargs(info, torch.ones(3), samplers.SamplerOptions(extra=extra))
    assert kwargs["variant"] == "bh2" and kwargs["order"] == 2 and kwargs["lower_order_final"] is False
    with pytest.raises(ValueError, match="UniPC variant"):
        unipc.sample_unipc(plain(GaussianDataModel()), torch.zeros(1, 1, 2, 2), torch.tensor([1.0, 0.0]),
                           variant="bh3")


# --- parity with diffusers ------------------------------------------------------------------------

def test_plms_matches_diffusers_pndm():
    """eps models only: diffusers' PNDM combines raw v outputs of earlier steps for v models (then
    converts with the current step's alphas); PLMS combines eps, as CompVis and A1111 do, so on a v
    model ours equals ours on the same model's eps form (checked below)."""
    from diffusers import PNDMScheduler

    model = GaussianDataModel(MU, S)
    steps = 12
    sched = PNDMScheduler(**SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    sched.set_timesteps(steps)
    noise = _noise()
    x = noise.clone()
    for t in sched.timesteps:
        x = sched.step(model.apply_model(x, torch.full((x.shape[0],), float(t)), None), t, x).prev_sample
    alphas = model.alphas_cumprod
    reference = x / alphas[0].sqrt()  # diffusers ends at alpha_bar[0]
    timesteps = sorted({int(t) for t in sched.timesteps}, reverse=True)
    sigmas = torch.tensor([float(((1 - alphas[t]) / alphas[t]).sqrt()) for t in timesteps + [0]])
    ours = functions.sample_plms(plain(model), noise / alphas[timesteps[0]].sqrt(), sigmas)
    assert (ours - reference).abs().max() < 1e-4
    ours_v = functions.sample_plms(plain(GaussianDataModel(MU, S, "v")), noise / alphas[timesteps[0]].sqrt(), sigmas)
    assert (ours_v - ours).abs().max() < 1e-4


@pytest.mark.parametrize("parameterization", ["eps", "v"])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_matches_diffusers(variant, order, parameterization):
    from diffusers import UniPCMultistepScheduler

    model = GaussianDataModel(MU, S, parameterization)
    steps = 10
    sched = UniPCMultistepScheduler(**SD_BETAS, solver_order=order, solver_type=variant, predict_x0=True,
                                    lower_order_final=True, final_sigmas_type="sigma_min",
                                    prediction_type=DIFFUSERS_PREDICTION[parameterization])
    sched.set_timesteps(steps)
    noise = _noise()
    x = noise.clone()
    for t in sched.timesteps:
        x = sched.step(model.apply_model(x, torch.full((x.shape[0],), float(t)), None), t, x).prev_sample
    sigmas = sched.sigmas.float()
    ours = unipc.sample_unipc(plain(model), noise * (1 + sigmas[0] ** 2).sqrt(), sigmas, variant=variant,
                              order=order)
    # diffusers stops at sigma_min in its own variables: x_t = x / sqrt(1 + sigma^2)
    assert (ours / (1 + sigmas[-1] ** 2).sqrt() - x).abs().max() < 1e-4


# --- Restart ---------------------------------------------------------------------------------------

def test_restart_plan_is_a1111s():
    sigmas = torch.linspace(14.6, 0.03, 20).tolist() + [0.0]
    main, restarts = functions.restart_plan(torch.tensor(sigmas))
    assert len(main) == 20 - 9 + 1  # 20 steps: one restart of 9 steps, the main schedule shortened
    (index, (n, times, top)), = restarts.items()
    assert (n, times, top) == (10, 1, 2.0) and abs(float(main[index]) - 0.1) < 0.1
    main, restarts = functions.restart_plan(torch.tensor(torch.linspace(14.6, 0.03, 40).tolist() + [0.0]))
    assert len(main) == 40 - 2 * 10 + 1 and list(restarts.values())[0][:2] == (11, 2)
    short = torch.tensor([3.0, 1.0, 0.0])
    assert functions.restart_plan(short) == (short, {})


def test_restart_samples_the_data_distribution_and_restarts():
    model = GaussianDataModel(MU, S)
    out, _, _ = run(samplers.find_sampler("Restart"), model, 20, "karras", seeds=[1, 2, 3, 4])
    assert abs(out.mean() - MU) < 0.04 and abs(out.std() - S) < 0.04
    # 11 main Heun steps (the last one Euler) + 9 restart steps, two calls each
    assert len(model.calls) == 2 * 20 - 1


# --- DDIM CFG++ ------------------------------------------------------------------------------------

def test_ddim_cfgpp_steps_with_the_unconditional_noise():
    """x_next = denoised_cfg + sigma_next * (x - denoised_uncond) / sigma (CFG++, Algorithm 1)."""
    model = GaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    cond, uncond = empty_conds(2, dim=8)
    cond.batch[0][0][0].entries[0] = (100, torch.full((77, 8), 0.5))  # a prompt that moves mu by 0.5
    cfg = CFGDenoiser(den, 1, keep_uncond=True, cond_scale_multiplier=1 / 12.5)
    x = _noise((2, 4, 8, 8)) * 3
    sigmas = torch.tensor([3.0, 1.0])
    out = functions.sample_ddim_cfgpp(cfg, x, sigmas, extra_args={"cond": cond, "uncond": uncond,
                                                                  "cond_scale": 6.25})
    s_in = torch.full((2,), 3.0)
    d_uncond = model.exact_denoised(x, s_in, MU)
    d_cond = model.exact_denoised(x, s_in, torch.tensor([MU + 0.5, MU]).view(2, 1, 1, 1))
    guided = d_uncond + (d_cond - d_uncond) * 0.5  # 6.25 / 12.5
    assert torch.allclose(out, guided + (x - d_uncond) / 3.0, atol=1e-4)


def test_ngms_never_skips_for_cfgpp():
    model = GaussianDataModel(MU, S)
    cfg = CFGDenoiser(samplers.make_denoiser(model), 10, keep_uncond=True)
    cond, uncond = empty_conds(2)
    x = torch.zeros(2, 4, 8, 8)
    for _ in range(4):
        cfg(x, torch.full((2,), 0.5), cond=cond, uncond=uncond, cond_scale=7.0, s_min_uncond=10.0)
    assert cfg.skipped_uncond_steps == [] and set(model.calls) == {4}


def test_a1111_names_and_listing():
    for name, alias in (("PLMS", "plms"), ("UniPC", "unipc"), ("Restart", "restart"), ("DDIM CFG++", "ddim_cfgpp")):
        assert samplers.find_sampler(alias).name == name
    names = [s.name for s in samplers.SAMPLERS]
    assert names.index("Restart") == names.index("DPM adaptive") + 1
    assert names[names.index("DDIM"):names.index("DDIM") + 4] == ["DDIM", "DDIM CFG++", "PLMS", "UniPC"]


# --- through the pipeline: eps (tiny v1) and v (tiny v2-v) models ----------------------------------------

@pytest.fixture(scope="module")
def tiny_models():
    from tests.tiny import make_tiny_model

    return {"eps": make_tiny_model("tiny-v1"), "v": make_tiny_model("tiny-v2-v")}


@pytest.mark.parametrize("parameterization", ["eps", "v"])
@pytest.mark.parametrize("name", ["PLMS", "UniPC", "Restart", "DDIM CFG++"])
def test_each_new_sampler_through_the_pipeline(tiny_models, name, parameterization):
    from modules.infotext import parse_generation_parameters
    from tests.test_processing import txt2img

    model = tiny_models[parameterization]
    res = txt2img(model, sampler_name=name, steps=4, seed=3)
    params = parse_generation_parameters(res.infotexts[0])
    assert params["Sampler"] == name and params["Schedule type"] == "Automatic"
    assert samplers.find_sampler(params["Sampler"]).name == name  # pasting the infotext finds it again
    again = txt2img(model, sampler_name=samplers.find_sampler(name).aliases[0], steps=4, seed=3)
    assert list(again.images[0].getdata()) == list(res.images[0].getdata())
