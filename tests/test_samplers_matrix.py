"""Every sampler x schedule type x (eps, v) runs through the CFG denoiser and returns finite latents."""
import pytest
import torch

from modules.sampling import rng, samplers
from modules.sampling.cfg_denoiser import CFGDenoiser
from modules.sampling.schedules import SCHEDULERS
from tests.gaussian_model import GaussianDataModel
from tests.test_samplers import MU, SEEDS, S, empty_conds


@pytest.mark.parametrize("parameterization", ["eps", "v"])
@pytest.mark.parametrize("scheduler", [s.name for s in SCHEDULERS])
@pytest.mark.parametrize("name", [s.name for s in samplers.SAMPLERS])
def test_every_sampler_and_schedule_runs(name, scheduler, parameterization):
    info = samplers.find_sampler(name)
    model = GaussianDataModel(MU, S, parameterization)
    den = samplers.make_denoiser(model)
    steps = 4
    sigmas = samplers.get_sigmas(info, steps, den, scheduler)
    # every schedule ends at 0 except KL Optimal, which (as A1111's) stops at sigma_min
    last = float(den.sigmas[0]) if scheduler == "kl_optimal" else 0.0
    assert sigmas.shape == (steps + 1,) and sigmas[-1].item() == pytest.approx(last, rel=1e-5)
    assert torch.all(sigmas[:-1] > 0)
    assert torch.all(sigmas[:-1] >= sigmas[1:]), "a schedule must descend"
    image_rng = rng.ImageRNG((4, 8, 8), SEEDS)
    noise = image_rng.next()
    cond, uncond = empty_conds(2)
    cfg = CFGDenoiser(den, steps)
    noise_sampler = samplers.make_noise_sampler(info, noise * sigmas[0], sigmas, image_rng, SEEDS)
    out = samplers.sample(cfg, noise, sigmas, info, noise_sampler=noise_sampler,
                          extra_args={"cond": cond, "uncond": uncond, "cond_scale": 7.0},
                          callback=cfg.callback)
    assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all()
    assert cfg.step > 0


