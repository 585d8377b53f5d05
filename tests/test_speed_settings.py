"""A1111's speed settings: token merging (tomesd through the model patcher) and Negative Guidance
minimum sigma (NGMS: the negative prompt skipped at low noise)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from modules.models.tome import token_merging_patcher
from modules.sampling import samplers
from modules.sampling.cfg_denoiser import CFGDenoiser
from tests.gaussian_model import GaussianDataModel
from tests.test_processing import make_env, txt2img
from tests.test_samplers import MU, S, empty_conds
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def v1():
    return make_tiny_model("tiny-v1")


def unet_call(model, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, size, size, generator=g)
    t = torch.tensor([500.0, 20.0])
    context = torch.randn(2, 77, 32, generator=g)  # tiny-v1: context_dim 32
    with torch.no_grad():
        return model.model.diffusion_model(x, t, context)


def test_ratio_zero_is_bit_identical_to_off(v1):
    off = unet_call(v1)
    with token_merging_patcher(v1, 0.0):
        zero = unet_call(v1)
    assert torch.equal(off, zero)


def test_merging_matches_tomesd_and_comes_off_exactly(v1):
    """Same numbers as tomesd's own class-swapping patch (A1111's arguments), and the model is
    bit-identical again after remove()."""
    import tomesd

    before = unet_call(v1)
    with token_merging_patcher(v1, 0.5):
        merged = unet_call(v1)
    assert torch.equal(unet_call(v1), before)
    assert not torch.equal(merged, before)
    reference_model = copy.deepcopy(v1)
    tomesd.apply_patch(reference_model, ratio=0.5, use_rand=False, merge_attn=True, merge_crossattn=False,
                       merge_mlp=False)
    # tomesd's block class overrides CompVis' `_forward` (the checkpointed body); ours is `forward`
    blocks = [m for m in reference_model.modules() if hasattr(m, "_tome_info") and hasattr(m, "_forward")]
    assert blocks
    for block in blocks:
        block.forward = block._forward
    reference = unet_call(reference_model)
    assert torch.allclose(merged, reference, atol=1e-6), (merged - reference).abs().max()


def test_only_the_highest_resolution_self_attention_is_merged(v1):
    seen = []
    patcher = token_merging_patcher(v1, 0.5)
    patcher.add_attention_patch(lambda q, k, v, heads, inner: seen.append((q.shape[1], k.shape[1])) or
                                inner(q, k, v, heads))
    with patcher:
        unet_call(v1, size=16)
    full = 16 * 16
    # attn1 at 16x16 sees half the tokens (queries and keys); attn2's keys are the 77 text tokens
    assert (full // 2, full // 2) in seen and (full, full) not in seen
    assert (full // 2, 77) not in seen and (full, 77) in seen
    assert any(q == 64 for q, _ in seen)  # the lower level is left alone


def test_ratio_reaches_the_pipeline_and_the_infotext(v1):
    plain = txt2img(v1, steps=3)
    merged = txt2img(v1, steps=3, token_merging_ratio=0.5)
    assert "Token merging ratio: 0.5" in merged.infotexts[0]
    assert "Token merging ratio" not in plain.infotexts[0]
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(merged.images[0]))
    setting = txt2img(v1, steps=3, env=make_env(token_merging_ratio=0.5))
    assert np.array_equal(np.asarray(setting.images[0]), np.asarray(merged.images[0]))
    hires = txt2img(v1, steps=3, enable_hr=True, hr_scale=1.5, denoising_strength=0.5,
                    env=make_env(token_merging_ratio_hr=0.3))
    assert "Token merging ratio hr: 0.3" in hires.infotexts[0]
    assert np.array_equal(np.asarray(txt2img(v1, steps=3).images[0]), np.asarray(plain.images[0]))


# --- NGMS --------------------------------------------------------------------------------------------

def _count_rows(s_min_uncond, **cfg_kw):
    """Rows per UNet call of a 10-step Euler run of a batch of 2 (4 = with negative prompt)."""
    model = GaussianDataModel(MU, S)
    den = samplers.make_denoiser(model)
    info = samplers.find_sampler("Euler")
    sigmas = samplers.get_sigmas(info, 10, den, "karras")
    cfg = CFGDenoiser(den, 10, **cfg_kw)
    cond, uncond = empty_conds(2)
    samplers.sample(cfg, torch.randn(2, 4, 8, 8), sigmas, info,
                    extra_args={"cond": cond, "uncond": uncond, "cond_scale": 7.0, "s_min_uncond": s_min_uncond})
    return model.calls, sigmas, cfg


def test_ngms_skips_every_other_step_below_the_sigma():
    calls, sigmas, cfg = _count_rows(1.0)
    expected = [2 if (i % 2 and float(sigmas[i]) < 1.0) else 4 for i in range(10)]
    assert calls == expected and 2 in calls
    assert cfg.skipped_uncond_steps == [i for i, rows in enumerate(expected) if rows == 2]
    assert cfg.infotext == {"NGMS": 1.0}
    assert _count_rows(0.0)[0] == [4] * 10


def test_ngms_all_steps_and_skip_early_cfg():
    calls, sigmas, cfg = _count_rows(1.0, ngms_all_steps=True)
    assert calls == [2 if float(sigmas[i]) < 1.0 else 4 for i in range(10)]
    assert cfg.infotext == {"NGMS": 1.0, "NGMS all steps": True}
    calls, _, cfg = _count_rows(0.0, skip_early_cond=0.2)
    assert calls == [2, 2, 2] + [4] * 7 and cfg.infotext == {"Skip Early CFG": 0.2}


def test_skipped_steps_use_the_cond_prediction_alone():
    """A skipped step combines with scale 1: the result is the cond prediction itself."""
    model = GaussianDataModel(MU, S)
    cfg = CFGDenoiser(samplers.make_denoiser(model), 10)
    cond, uncond = empty_conds(2)
    cond.batch[0][0][0].entries[0] = (100, torch.full((77, 8), 0.5))
    x, sigma = torch.zeros(2, 4, 8, 8), torch.full((2,), 0.5)
    cfg(x, sigma, cond=cond, uncond=uncond, cond_scale=7.0, s_min_uncond=1.0)  # step 0: not skipped
    out = cfg(x, sigma, cond=cond, uncond=uncond, cond_scale=7.0, s_min_uncond=1.0)
    expected = model.exact_denoised(x, sigma, torch.tensor([MU + 0.5, MU]).view(2, 1, 1, 1))
    assert torch.allclose(out, expected, atol=1e-5)


def test_ngms_reaches_the_pipeline_and_the_infotext(v1):
    plain = txt2img(v1, steps=6, sampler_name="Euler")
    ngms = txt2img(v1, steps=6, sampler_name="Euler", s_min_uncond=5.0)
    assert "NGMS: 5.0" in ngms.infotexts[0] and "NGMS" not in plain.infotexts[0]
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(ngms.images[0]))
    from_setting = txt2img(v1, steps=6, sampler_name="Euler", env=make_env(s_min_uncond=5.0))
    assert np.array_equal(np.asarray(from_setting.images[0]), np.asarray(ngms.images[0]))
    cfgpp = txt2img(v1, steps=6, sampler_name="DDIM CFG++", s_min_uncond=5.0)
    assert "NGMS" not in cfgpp.infotexts[0]
