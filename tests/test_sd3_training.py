"""The SD3 demo's training recipe (modules/training: sd3_shapes, train_flow, demo_sd3) on small inputs:
the data says what its captions say, the folded training forward is the model's own forward, the
latent re-parametrisation meets SD3's fixed scale and shift, and a few steps of rectified-flow
training lower the loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.ldm.sd3 import build_sd3
from modules.training import demo_sd3, image_metrics, sd3_shapes, train_flow
from modules.training.train_autoencoder import init_low_logvar


def uint8(images: np.ndarray) -> np.ndarray:
    return ((images.transpose(0, 2, 3, 1) + 1) * 127.5).round().astype(np.uint8)


def test_pictures_show_what_the_full_captions_say():
    images, captions, scenes = sd3_shapes.batch(np.random.default_rng(1), 200, 32, drop=False)
    measured = {"color": image_metrics.dominant_color, "shape": image_metrics.shape, "side": image_metrics.side,
                "size": image_metrics.size,
                "background": lambda im: image_metrics.background(im, sd3_shapes.BACKGROUNDS)}
    for attr, measure in measured.items():
        right = sum(measure(im) == getattr(s, attr) for im, s in zip(uint8(images), scenes, strict=True))
        assert right >= 196, f"{attr}: {right}/200"  # the metric itself, on exact pictures (small shapes are 8-11 px)
    for text, s in zip(captions, scenes, strict=True):
        assert text == f"a {s.size} {s.color} {s.shape} on the {s.side} on a {s.background} background".replace(
            "a orange", "an orange")
        assert s.background != s.color  # a shape is never drawn in its background's colour


@pytest.mark.parametrize("contrasts", [sd3_shapes.CONTRASTS, sd3_shapes.ALL_CONTRASTS])
def test_contrast_pairs_differ_in_one_named_attribute(contrasts):
    rng = np.random.default_rng(2)
    images, captions, scenes = sd3_shapes.batch(rng, 64, 32, contrast_pairs=True, contrasts=contrasts)
    half = len(scenes) // 2
    kinds = set()
    for i in range(half):
        a, b = scenes[i], scenes[i + half]
        changed = [k for k in ("side", "size", "background", "color", "shape") if getattr(a, k) != getattr(b, k)]
        assert len(changed) == 1, (a, b)
        kinds.add(changed[0])
        if captions[i]:  # the changed attribute is named in both captions; nothing else differs
            assert str(getattr(a, changed[0])) in captions[i] and str(getattr(b, changed[0])) in captions[i + half]
            assert captions[i].replace(getattr(a, changed[0]), getattr(b, changed[0]), 1) == captions[i + half]
        else:
            assert captions[i + half] == ""
    assert kinds == set(contrasts)


def test_logit_normal_times():
    t = train_flow.logit_normal(20000, torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1
    u = torch.logit(t.double())
    assert abs(u.mean()) < 0.03 and abs(u.std() - 1) < 0.03
    assert abs(float((t < 0.5).float().mean()) - 0.5) < 0.02  # symmetric around the middle of the path


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_sd3(demo_sd3.demo_config(hidden=64, depth=2))
    train_flow.init_mmdit(model.model.diffusion_model)
    init_low_logvar(model.first_stage_model, -6.0)  # as the autoencoder stage starts: near-deterministic
    demo_sd3.normalize_latents(model.first_stage_model, sd3_shapes.images(np.random.default_rng(0), 32, 32))
    return model


def test_folded_forward_is_the_models_forward(tiny):
    """Training folds SD3's 77 zero T5 tokens into one token with log(77) more attention weight: the
    same velocity as apply_model on the full 154-token context (random non-zero weights, so every
    block, gate and the final layer take part)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        state = {k: v.clone() for k, v in tiny.state_dict().items()}
        for p in tiny.model.diffusion_model.parameters():
            p.data.normal_(0, 0.05)
        cond = tiny.get_learned_conditioning(["a red circle", "", "a small blue square on a white background"])
        assert cond["crossattn"].shape[1] == 154
        z, t = torch.randn(3, 16, 8, 8), torch.rand(3)
        full = tiny.apply_model(z, 1000 * t, cond)
        folded = train_flow.velocity(tiny, z, t, cond)
        tiny.load_state_dict(state)
    assert full.abs().max() > 0.1
    torch.testing.assert_close(folded, full, atol=2e-5, rtol=1e-4)


def test_normalized_latents_meet_sd3s_scale_and_shift():
    ae = demo_sd3.build_autoencoder(0)
    images = sd3_shapes.images(np.random.default_rng(3), 32, 32)
    x = torch.from_numpy(images)
    with torch.no_grad():
        before = ae.encode(x)
        demo_sd3.normalize_latents(ae, images)
        after = ae.encode(x)
        model_latent = (after.mode() - 0.0609) * 1.5305
        assert abs(float(model_latent.mean())) < 1e-4 and abs(float(model_latent.std()) - 1) < 1e-4
        # an affine map of the posterior: the same a for every element, the variance scaled by a^2
        a = (after.mode() - after.mode().mean()).norm() / (before.mode() - before.mode().mean()).norm()
        torch.testing.assert_close(after.std, before.std * a, rtol=1e-4, atol=1e-6)
        # the decoder's first layer sees the same input away from the zero padding
        ref = demo_sd3.build_autoencoder(0)
        inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
        torch.testing.assert_close(ae.decoder.conv_in(after.mode())[inner], ref.decoder.conv_in(before.mode())[inner],
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_a_few_flow_steps_lower_the_loss(tiny):
    """The whole training step (data, frozen VAE, text encoders, folded forward, AdamW, EMA) learns:
    the loss on one fixed batch falls after 30 steps (from 2 = E|noise - z0|^2: the DiT init predicts 0)."""
    cfg = train_flow.FlowTraining(steps=30, batch_size=4, lr=5e-3, warmup_steps=3)

    def data(rng, n, size):
        images, captions, _ = sd3_shapes.batch(np.random.default_rng(0), n, size, contrast_pairs=True)
        return images, captions

    def loss_now():
        images, captions = data(None, 4, 32)
        with torch.no_grad():
            z0 = tiny.get_first_stage_encoding(tiny.encode_first_stage(torch.from_numpy(images)),
                                               torch.Generator().manual_seed(0))
            return float(train_flow.flow_loss(tiny, z0, train_flow.conditioning(tiny, captions),
                                              torch.Generator().manual_seed(0), shared_pairs=True))

    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    before = loss_now()
    trainer = train_flow.train_flow(tiny, cfg, 0, data)
    after = loss_now()
    tiny.load_state_dict(state)
    tiny.eval().requires_grad_(False)
    assert trainer.step == 30
    assert 1.5 < before < 2.5 and after < 0.9 * before, (before, after)
