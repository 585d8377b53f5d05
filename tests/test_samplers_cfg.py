"""The CFG denoiser: batching, AND weights, prompt-editing switches, image conditioning, hooks, NaNs."""
import pytest
import torch

from modules.cond_schedule import MultiCond, ScheduledCond
from modules.sampling import samplers
from modules.sampling.cfg_denoiser import (
    NAN_MESSAGE,
    CFGDenoiser,
    CFGHooks,
    LatentBlend,
    NansError,
    SamplingInterrupted,
    schedule_steps,
)
from tests.gaussian_model import GaussianDataModel

MU, S = 0.3, 0.5


def const(value: float, length: int = 77, dim: int = 4) -> torch.Tensor:
    """A conditioning tensor whose mean is `value` (the Gaussian model's mean shifts by it)."""
    return torch.full((length, dim), value)


def single(c):
    return ScheduledCond([(1000, c)])


def setup(parameterization="eps", **kw):
    model = GaussianDataModel(MU, S, parameterization)
    den = samplers.make_denoiser(model)
    return model, den, CFGDenoiser(den, 10, **kw)


def test_cfg_combines_cond_and_uncond_predictions():
    model, den, cfg = setup()
    x = torch.randn(2, 4, 8, 8) * 3
    sigma = torch.full((2,), 2.0)
    cond = MultiCond([[(single(const(1.0)), 1.0)], [(single(const(-1.0)), 1.0)]])
    uncond = [single(const(0.0)), single(const(0.5))]
    out = cfg(x, sigma, cond=cond, uncond=uncond, cond_scale=7.0)
    for i, (c, u) in enumerate([(1.0, 0.0), (-1.0, 0.5)]):
        d_c = model.exact_denoised(x[i:i + 1], sigma[:1], MU + c)
        d_u = model.exact_denoised(x[i:i + 1], sigma[:1], MU + u)
        assert torch.allclose(out[i:i + 1], d_u + (d_c - d_u) * 7.0, atol=1e-4)
    assert model.calls == [4], "cond and uncond of both images in one UNet batch"


def test_and_weights_compose():
    model, den, cfg = setup()
    x = torch.randn(1, 4, 8, 8)
    sigma = torch.full((1,), 1.0)
    cond = MultiCond([[(single(const(1.0)), 1.0), (single(const(-2.0)), 0.5)]])
    out = cfg(x, sigma, cond=cond, uncond=[single(const(0.0))], cond_scale=5.0)
    d = lambda shift: model.exact_denoised(x, sigma, MU + shift)  # noqa: E731
    expected = d(0.0) + (d(1.0) - d(0.0)) * 1.0 * 5.0 + (d(-2.0) - d(0.0)) * 0.5 * 5.0
    assert torch.allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("max_batch", [1, 2, 3])
def test_max_batch_splits_the_unet_batch_with_the_same_result(max_batch):
    cond = MultiCond([[(single(const(1.0)), 1.0), (single(const(2.0)), 0.3)], [(single(const(-1.0)), 1.0)]])
    uncond = [single(const(0.0)), single(const(0.1))]
    x, sigma = torch.randn(2, 4, 8, 8), torch.full((2,), 3.0)
    _, _, whole = setup()
    model, _, split = setup(max_batch=max_batch)
    expected = whole(x, sigma, cond=cond, uncond=uncond, cond_scale=7.0)
    assert torch.allclose(split(x, sigma, cond=cond, uncond=uncond, cond_scale=7.0), expected, atol=1e-6)
    assert max(model.calls) <= max_batch and sum(model.calls) == 5


def test_cond_and_uncond_of_different_lengths_are_padded():
    model, den, cfg = setup()
    seen = []
    cfg.hooks.on_cfg_denoiser.append(lambda p: seen.append((p.text_cond.shape, p.text_uncond.shape)))
    long_cond = torch.cat([const(1.0), const(1.0)])  # 154 tokens
    out = cfg(torch.randn(1, 4, 8, 8), torch.ones(1), cond=MultiCond([[(single(long_cond), 1.0)]]),
              uncond=[single(const(0.0))], cond_scale=7.0)
    assert seen == [(torch.Size([1, 154, 4]), torch.Size([1, 154, 4]))] and torch.isfinite(out).all()


def test_prompt_editing_switches_at_the_scheduled_step():
    """[a:b:3] with Euler, 10 steps: steps 0-3 use a, steps 4-9 use b (seen by on_cfg_denoiser)."""
    model, den, _ = setup()
    a, b = const(1.0), const(-1.0)
    seen = []
    cfg = CFGDenoiser(den, 10, hooks=CFGHooks(on_cfg_denoiser=[lambda p: seen.append(float(p.text_cond.mean()))]))
    info = samplers.find_sampler("Euler")
    sigmas = samplers.get_sigmas(info, 10, den)
    cond = MultiCond([[(ScheduledCond([(3, a), (10, b)]), 1.0)]])
    samplers.sample(cfg, torch.randn(1, 4, 8, 8), sigmas, info,
                    extra_args={"cond": cond, "uncond": [single(const(0.0))], "cond_scale": 7.0})
    assert seen == [1.0] * 4 + [-1.0] * 6


def test_second_order_samplers_count_model_calls_like_a1111():
    """Heun calls the model twice per step: schedules are built for 2 x steps (schedule_steps) and
    the step counter advances per call, so a switch at half the schedule lands half way."""
    model, den, _ = setup()
    info = samplers.find_sampler("Heun")
    steps = 6
    total = schedule_steps(steps, info.second_order)
    assert total == 12
    seen = []
    cfg = CFGDenoiser(den, steps, hooks=CFGHooks(on_cfg_denoiser=[lambda p: seen.append(float(p.text_cond.mean()))]))
    cond = MultiCond([[(ScheduledCond([(total // 2 - 1, const(1.0)), (total, const(-1.0))]), 1.0)]])
    samplers.sample(cfg, torch.randn(1, 4, 8, 8), samplers.get_sigmas(info, steps, den), info,
                    extra_args={"cond": cond, "uncond": [single(const(0.0))], "cond_scale": 7.0})
    assert len(seen) == 2 * steps - 1  # the last step to sigma 0 is a single Euler call
    assert seen[:6] == [1.0] * 6 and seen[6:] == [-1.0] * 5


@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_image_conditioning_reaches_the_model_for_cond_and_uncond(parameterization):
    """Hybrid models get {"c_crossattn": [...], "c_concat": [...]}, the image cond repeated for every
    cond row and once more for the uncond rows."""
    model, den, cfg = setup(parameterization)
    seen = []
    cfg.hooks.on_cfg_denoiser.append(lambda p: seen.append(p.image_cond.shape))
    x, sigma = torch.randn(1, 4, 8, 8), torch.full((1,), 1.5)
    image_cond = torch.full((1, 5, 8, 8), 0.25)  # e.g. inpainting: mask + masked-image latent
    cond = MultiCond([[(single(const(1.0)), 1.0), (single(const(0.0)), 1.0)]])
    out = cfg(x, sigma, cond=cond, uncond=[single(const(0.0))], cond_scale=2.0, image_cond=image_cond)
    assert seen == [torch.Size([3, 5, 8, 8])]
    d = lambda shift: model.exact_denoised(x, sigma, MU + 0.25 + shift)  # noqa: E731
    expected = d(0.0) + (d(1.0) - d(0.0)) * 2.0
    assert torch.allclose(out, expected, atol=1e-4)


def test_hooks_can_replace_inputs_predictions_and_result():
    model, den, cfg = setup()
    x, sigma = torch.randn(1, 4, 8, 8), torch.full((1,), 1.0)
    args = dict(cond=MultiCond([[(single(const(1.0)), 1.0)]]), uncond=[single(const(0.0))], cond_scale=3.0)
    base = cfg(x, sigma, **args)

    def swap_cond(p):
        p.text_cond = torch.zeros_like(p.text_cond)

    cfg.hooks.on_cfg_denoiser.append(swap_cond)
    assert torch.allclose(cfg(x, sigma, **args), model.exact_denoised(x, sigma, MU), atol=1e-4)
    cfg.hooks.on_cfg_denoiser.clear()
    raw = []
    cfg.hooks.on_cfg_denoised.append(lambda p: raw.append((p.x.shape, p.total_sampling_steps)))
    cfg.hooks.on_cfg_after_cfg.append(lambda p: setattr(p, "x", p.x * 0 + 5))
    out = cfg(x, sigma, **args)
    assert raw == [(torch.Size([2, 4, 8, 8]), 10)] and torch.all(out == 5) and not torch.all(base == 5)


def test_nans_from_the_unet_are_a_clear_error():
    _, _, cfg = setup()
    nan_cond = MultiCond([[(single(const(float("nan"))), 1.0)]])
    with pytest.raises(NansError, match="try --no-half"):
        cfg(torch.randn(1, 4, 8, 8), torch.ones(1), cond=nan_cond, uncond=[single(const(0.0))], cond_scale=7.0)
    assert "the UNet produced NaNs: try --no-half" in NAN_MESSAGE


def test_latent_blend_keeps_the_known_part():
    init = torch.full((1, 4, 8, 8), 2.0)
    nmask = torch.zeros(1, 1, 8, 8)
    nmask[..., :, 4:] = 1  # regenerate the right half
    model, den, cfg = setup(blend=LatentBlend(init, nmask))
    out = cfg(torch.randn(1, 4, 8, 8), torch.ones(1), cond=MultiCond([[(single(const(0.0)), 1.0)]]),
              uncond=[single(const(0.0))], cond_scale=7.0)
    assert torch.all(out[..., :4] == 2.0) and not torch.any(out[..., 4:] == 2.0)


@pytest.mark.parametrize("flag", ["interrupted", "skipped"])
def test_interrupt_and_skip_flags_stop_sampling(flag):
    class Job:
        interrupted = False
        skipped = False

    job = Job()
    _, _, cfg = setup(interrupt=job)
    args = dict(cond=MultiCond([[(single(const(0.0)), 1.0)]]), uncond=[single(const(0.0))], cond_scale=7.0)
    first = cfg(torch.randn(1, 4, 8, 8), torch.ones(1), **args)
    setattr(job, flag, True)
    with pytest.raises(SamplingInterrupted) as stop:
        cfg(torch.randn(1, 4, 8, 8), torch.ones(1), **args)
    assert stop.value.reason == flag and torch.equal(stop.value.latent, first)


def test_interrupt_callable():
    _, _, cfg = setup(interrupt=lambda: True)
    with pytest.raises(SamplingInterrupted):
        cfg(torch.randn(1, 4, 8, 8), torch.ones(1), cond=MultiCond([[(single(const(0.0)), 1.0)]]),
            uncond=[single(const(0.0))], cond_scale=7.0)


def test_mismatched_batch_is_a_clear_error():
    _, _, cfg = setup()
    with pytest.raises(ValueError, match="does not match a batch of 2"):
        cfg(torch.randn(2, 4, 8, 8), torch.ones(2), cond=MultiCond([[(single(const(0.0)), 1.0)]]),
            uncond=[single(const(0.0))], cond_scale=7.0)
