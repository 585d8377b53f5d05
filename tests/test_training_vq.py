"""VQ-GAN and LDSR training code: the objective learns a fixed batch, the codebook is seeded and
restarted, the stages run and resume, the super-resolution data is what it claims."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules.ldm.vqgan import VQConfig, VQModel, VQModelInterface
from modules.training import sr_scenes
from modules.training.discriminator import NLayerDiscriminator
from modules.training.train_ldsr import LDSRTraining, train_ldsr
from modules.training.train_vq import VQTraining, train_vq
from modules.training.vq_loss import CodebookUsage, VQGANLoss, VQLossConfig
from tests.test_ldsr import tiny_ldsr


def tiny_vq(n_embed: int = 32) -> VQModelInterface:
    torch.manual_seed(0)
    return VQModelInterface(VQConfig.from_params({"embed_dim": 3, "n_embed": n_embed, "ddconfig": {
        "double_z": False, "z_channels": 3, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0, "attn_type": "none"}}))


def test_vq_objective_learns_a_fixed_batch():
    vq = tiny_vq().train()
    x = torch.from_numpy(sr_scenes.canvas_pairs(np.random.default_rng(0), 2, 8)[0])
    loss_fn = VQGANLoss(NLayerDiscriminator(ndf=8, n_layers=1), VQLossConfig(disc_start=10))
    with torch.no_grad():  # codes on the encoder outputs, as the training seeds them
        h = vq.encode_to_prequant(x).permute(0, 2, 3, 1).reshape(-1, 3)
        vq.quantize.embedding.weight.copy_(h[torch.randperm(len(h), generator=torch.Generator().manual_seed(0))[:32]])
    opt = torch.optim.Adam(vq.parameters(), lr=2e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=2e-3, betas=(0.5, 0.9))

    def losses(step):
        rec, q_loss, _ = vq(x)
        g, log = loss_fn.vq_generator_loss(x, rec, q_loss, step, vq.decoder.conv_out.weight)
        return g, loss_fn.discriminator_loss(x, rec, step), log

    first = losses(0)[2]
    for step in range(20):
        g, d, log = losses(step)
        opt.zero_grad()
        g.backward()
        assert vq.quantize.embedding.weight.grad.abs().sum() > 0  # the codebook term moves the codes
        opt.step()
        if d is not None:
            opt_d.zero_grad()
            d.backward()
            opt_d.step()
        assert ("g" in log) == (step >= 10)
    assert losses(20)[2]["rec"] < 0.7 * first["rec"]


def test_quantizer_loss_terms_and_straight_through_gradient():
    vq = tiny_vq(8)
    z = torch.randn(1, 3, 2, 2, requires_grad=True)
    z_q, loss, (_, _, idx) = vq.quantize(z)
    e = vq.quantize.embedding.weight[idx].view(1, 2, 2, 3).permute(0, 3, 1, 2)
    mse = ((e - z) ** 2).mean()
    torch.testing.assert_close(loss, mse + 0.25 * mse)  # legacy: commitment + beta * codebook (equal values)
    torch.testing.assert_close(z_q, e)
    z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))  # straight-through: d z_q / d z = 1


def test_codebook_restart_moves_only_unused_codes():
    emb = torch.nn.Embedding(6, 2)
    before = emb.weight.detach().clone()
    usage = CodebookUsage(6)
    usage.update(torch.tensor([0, 0, 2, 5]))
    data = torch.full((10, 2), 7.0)
    assert usage.restart(emb, data, torch.Generator().manual_seed(0)) == 3
    moved = (emb.weight.detach() - before).abs().sum(1) > 0
    assert moved.tolist() == [False, True, False, True, True, False]
    assert torch.allclose(emb.weight[moved], torch.full((3, 2), 7.0), atol=0.01)
    assert usage.counts.sum() == 0


def test_train_vq_seeds_the_codebook_and_is_reproducible(tmp_path):
    cfg = VQTraining(steps=4, batch_size=2, crop=4, unquantized_steps=2, seed_batches=2, restart_every=1,
                     warmup_steps=1)
    straight = tiny_vq()
    train_vq(straight, cfg, 0, tmp_path / "a.pt")
    h = straight.encode_to_prequant(torch.from_numpy(sr_scenes.canvas_pairs(np.random.default_rng(0), 2, 4)[0]))
    spread = straight.quantize.embedding.weight.detach().std(0)
    assert (spread > 0.2 * h.detach().std()).all()  # seeded from encoder outputs, not the ~1/n init
    part = tiny_vq()
    train_vq(part, VQTraining(**{**cfg.__dict__, "steps": 4}), 0, tmp_path / "b.pt")
    torch.testing.assert_close(part.state_dict(), straight.state_dict(), rtol=0, atol=0)  # same seed, same model


def test_train_ldsr_runs_on_the_first_stage_latents():
    model = tiny_ldsr()
    before = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    trainer = train_ldsr(model, LDSRTraining(steps=2, batch_size=2, crop=8, dataset_size=4, warmup_steps=1), 0)
    assert trainer.step == 2
    after = model.model.diffusion_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert model.first_stage_model.quantize.embedding.weight.requires_grad is False


def test_super_resolution_pairs_and_psnr():
    hr, lr = sr_scenes.pairs(np.random.default_rng(3), 2)
    assert hr.shape == (2, 3, 128, 128) and lr.shape == (2, 3, 32, 32)
    assert hr.min() >= -1 and hr.max() <= 1
    hr_c, lr_c = sr_scenes.pairs(np.random.default_rng(3), 2, crop=8)
    assert hr_c.shape == (2, 3, 32, 32) and lr_c.shape == (2, 3, 8, 8)
    a, b = sr_scenes.canvas(np.random.default_rng(5), 40), sr_scenes.canvas(np.random.default_rng(5), 40)
    assert np.array_equal(a, b) and a.shape == (40, 40, 3) and len(np.unique(a.reshape(-1, 3), axis=0)) > 1
    truth, low = sr_scenes.grid(np.random.default_rng(1), 2, 3)
    assert truth.size == (384, 256) and low.size == (96, 64)
    assert sr_scenes.psnr(truth, truth) == float("inf")
    shifted = Image.fromarray(np.clip(np.asarray(truth).astype(int) + 5, 0, 255).astype(np.uint8))
    assert sr_scenes.psnr(shifted, truth) == pytest.approx(10 * np.log10(255 ** 2 / 25), abs=0.2)
    assert sr_scenes.psnr(low.resize(truth.size, Image.BICUBIC), truth) > 25


def test_demo_yaml_has_the_ldsr_layout():
    from modules.ldm.config import build_from_config, load_config
    from modules.ldsr.checkpoint import BUNDLED_YAML
    from modules.training.ldsr_demo import demo_config

    ours, original = demo_config(0.5), load_config(BUNDLED_YAML)

    def targets(cfg):
        p = cfg["model"]["params"]
        return [cfg["model"]["target"], *(p[k]["target"] for k in ("unet_config", "first_stage_config",
                                                                     "cond_stage_config"))]

    assert targets(ours) == targets(original)
    model = build_from_config(ours, device="meta")
    assert model.conditioning_key == "concat" and model.scale_factor == 0.5
    assert model.model.diffusion_model.config.in_channels == 6 and model.vae_scale_factor == 4
    fs = model.first_stage_model
    assert isinstance(fs, VQModelInterface) and (fs.config.embed_dim, fs.config.n_embed) == (3, 8192)
    assert isinstance(fs, VQModel)
