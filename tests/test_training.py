"""Training code: each objective learns a fixed batch, the trainer resumes exactly, data set is sane."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.training import image_metrics, shapes
from modules.training.autoencoder_loss import AutoencoderLoss, AutoencoderLossConfig
from modules.training.diffusion_loss import diffusion_loss, q_sample, target
from modules.training.discriminator import NLayerDiscriminator
from modules.training.trainer import OptimizerSpec, Trainer
from tests.tiny import make_tiny_model


def _fixed_batch(n=4, size=64):
    images, captions, _ = shapes.batch(np.random.default_rng(0), n, size, drop=False)
    return torch.from_numpy(images), captions


def _train_diffusion_steps(model, steps=20, lr=2e-3):
    images, captions = _fixed_batch()
    with torch.no_grad():
        z = model.get_first_stage_encoding(model.encode_first_stage(images).mode())
    nets = [model.model.diffusion_model, model.cond_stage_model]
    params = [p for n in nets for p in n.parameters()]
    for n in nets:
        n.train().requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)

    def loss_now():  # same timesteps and noise every call: a fixed batch
        return diffusion_loss(model, z, model.get_learned_conditioning(captions), torch.Generator().manual_seed(1))

    first = loss_now().item()
    for _ in range(steps):
        opt.zero_grad()
        loss_now().backward()
        opt.step()
    return first, loss_now().item()


@pytest.mark.parametrize("config", ["tiny-v1", "tiny-v2-v"])
def test_diffusion_objective_learns_a_fixed_batch(config):
    model = make_tiny_model(config)
    assert model.parameterization == ("v" if config == "tiny-v2-v" else "eps")
    first, last = _train_diffusion_steps(model)
    assert last < 0.7 * first, (first, last)


def test_v_target_matches_its_definition():
    abar = torch.linspace(0.99, 0.01, 1000)
    x0, noise, t = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.tensor([0, 500, 999])
    a = abar[t].view(-1, 1, 1, 1)
    x_t = q_sample(x0, t, noise, abar)
    v = target("v", x0, t, noise, abar)
    # v-prediction identities (Salimans & Ho 2022): x0 = sqrt(a) x_t - sqrt(1-a) v
    torch.testing.assert_close(a.sqrt() * x_t - (1 - a).sqrt() * v, x0)
    assert torch.equal(target("eps", x0, t, noise, abar), noise)
    with pytest.raises(ValueError, match="parameterization"):
        target("x0", x0, t, noise, abar)


def test_autoencoder_objective_learns_a_fixed_batch():
    model = make_tiny_model("tiny-v1")
    ae = model.first_stage_model.train().requires_grad_(True)
    images, _ = _fixed_batch(2)
    torch.manual_seed(0)
    loss_fn = AutoencoderLoss(NLayerDiscriminator(ndf=8, n_layers=1), AutoencoderLossConfig(disc_start=10))
    opt_ae = torch.optim.Adam(ae.parameters(), lr=2e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=2e-3, betas=(0.5, 0.9))

    def losses(step):
        posterior = ae.encode(images)
        rec = ae.decode(posterior.mode())
        g, log = loss_fn.generator_loss(images, rec, posterior, step, ae.decoder.conv_out.weight)
        return g, loss_fn.discriminator_loss(images, rec, step), log

    first = losses(0)[2]["rec"]
    for step in range(20):  # the discriminator joins at step 10
        g, d, log = losses(step)
        opt_ae.zero_grad()
        g.backward()
        opt_ae.step()
        if d is not None:
            opt_d.zero_grad()
            d.backward()
            opt_d.step()
        if step >= 10:
            assert "g" in log and d is not None
    assert losses(20)[2]["rec"] < 0.7 * first


def _tiny_trainer(tmp_path, total, seed=0):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    trainer = Trainer({"net": net}, {"main": OptimizerSpec(list(net.parameters()), 1e-2, warmup_steps=2)},
                      total_steps=total, seed=seed, ema={"net": 0.9}, checkpoint=tmp_path / "ckpt.pt")

    def step_fn(step, rng, gen):
        x = torch.from_numpy(rng.normal(size=(16, 3)).astype(np.float32)) + torch.randn(16, 3, generator=gen)
        loss = (net(x).squeeze(1) - x.sum(1)).pow(2).mean()
        return {"main": loss}, {"loss": loss.item()}

    return trainer, step_fn


def test_trainer_resumes_exactly(tmp_path):
    straight, fn = _tiny_trainer(tmp_path / "a", total=6)
    straight.run(fn)
    part, fn = _tiny_trainer(tmp_path / "b", total=3)
    part.run(fn)  # "killed" after 3 steps; its checkpoint holds step 3
    resumed, fn = _tiny_trainer(tmp_path / "b", total=6)
    assert resumed.step == 3
    resumed.run(fn)
    for k, v in straight.modules["net"].state_dict().items():
        torch.testing.assert_close(resumed.modules["net"].state_dict()[k], v, rtol=0, atol=0)
    for k, v in straight.averaged("net").state_dict().items():
        torch.testing.assert_close(resumed.averaged("net").state_dict()[k], v, rtol=0, atol=0)
    assert not list((tmp_path / "b").glob("*.tmp"))  # atomic writes leave no temp files


def test_trainer_refuses_a_checkpoint_of_another_seed(tmp_path):
    t, fn = _tiny_trainer(tmp_path, total=1)
    t.run(fn)
    with pytest.raises(ValueError, match="seed"):
        _tiny_trainer(tmp_path, total=2, seed=1)


def test_captions_describe_the_image_and_drop_attributes():
    rng = np.random.default_rng(3)
    scenes = shapes.sample_scenes(rng, 200)
    full = shapes.caption(scenes[0])
    assert full == (f"a {scenes[0].size} {scenes[0].color} {scenes[0].shape} on the {scenes[0].side}, "
                    f"{scenes[0].background} background")
    dropped = [shapes.caption(s, rng) for s in scenes]
    assert "" in dropped  # unconditional captions for guidance
    assert any(c.startswith("a ") and " on the " not in c and c for c in dropped)
    for s, c in zip(scenes, dropped, strict=True):  # a caption names only what the image shows
        named = set(c.replace(",", "").split())
        assert not named & (set(shapes.COLORS) - {s.color}) and not named & (set(shapes.SHAPES) - {s.shape})
        assert not named & ({"left", "right"} - {s.side})
    # the same seed gives the same scenes (reproducible, resumable data)
    assert shapes.sample_scenes(np.random.default_rng(3), 5) == scenes[:5]


def test_image_metrics_read_the_rendered_scene():
    images, _, scenes = shapes.batch(np.random.default_rng(1), 60, 32, drop=False)
    u8 = ((images.transpose(0, 2, 3, 1) + 1) * 127.5).round().astype(np.uint8)
    for img, s in zip(u8, scenes, strict=True):
        assert image_metrics.dominant_color(img) == s.color
        assert image_metrics.side(img) == s.side
        assert image_metrics.shape(img) == s.shape
    blank = np.full((64, 64, 3), 128, np.uint8)
    assert image_metrics.dominant_color(blank) is None and image_metrics.color_share(blank, "red") == 0


def test_export_round_trips_through_the_app_loader(tmp_path):
    from modules.ldm.config import load_config
    from modules.models.loader import load_checkpoint
    from modules.training.export import SCHEDULE_BUFFERS, export
    from tests.tiny import tiny_config_path

    model = make_tiny_model("tiny-v1", seed=3)
    path = tmp_path / "tiny.safetensors"
    export(model, load_config(tiny_config_path("tiny-v1")), path)
    assert path.with_suffix(".yaml").is_file()
    loaded = load_checkpoint(path).model  # the yaml beside it decides the config
    original = model.state_dict()
    assert set(loaded.state_dict()) == set(original)
    for key, value in loaded.state_dict().items():
        if key in SCHEDULE_BUFFERS or not value.is_floating_point():
            torch.testing.assert_close(value, original[key], rtol=0, atol=0)
        else:  # stored as fp16
            torch.testing.assert_close(value.float(), original[key].half().float(), rtol=0, atol=0)


def test_ema_warms_up_and_copies_integer_buffers():
    from torch.optim.swa_utils import AveragedModel

    from modules.training.trainer import ema_multi_avg_fn

    net = torch.nn.Linear(1, 1, bias=False)
    net.register_buffer("position_ids", torch.arange(77))
    torch.nn.init.zeros_(net.weight)
    ema = AveragedModel(net, multi_avg_fn=ema_multi_avg_fn(0.999), use_buffers=True)
    ema.update_parameters(net)  # first update copies
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update_parameters(net)  # n=1: decay (1+1)/(10+1), not 0.999
    assert ema.module.weight.item() == pytest.approx(1 - 2 / 11)
    assert torch.equal(ema.module.position_ids, torch.arange(77))


def test_loss_weights_favour_the_right_noise_levels():
    from modules.training.diffusion_loss import high_noise_weight, min_snr_weight

    abar = make_tiny_model("tiny-v1").alphas_cumprod
    t = torch.tensor([0, 100, 500, 999])
    hi = high_noise_weight(t, abar, 20.0)
    assert hi[0] == 1 and hi[1] == 1 and hi[-1] == 20 and 1 < hi[2] < 20
    low = min_snr_weight("eps", t, abar, 5.0)
    assert low[0] < 0.01 and low[-1] == 1  # low-noise steps no longer dominate


def test_mirror_pairs_differ_only_by_side():
    images, captions, scenes = shapes.batch(np.random.default_rng(5), 8, 32, mirror_pairs=True)
    for i in range(4):
        a, b = scenes[i], scenes[i + 4]
        assert (a.color, a.shape) == (b.color, b.shape) and a.side != b.side
        np.testing.assert_array_equal(images[i], images[i + 4][:, :, ::-1])  # exact mirror images
        if captions[i]:
            assert f"on the {a.side}" in captions[i]
            assert captions[i + 4] == captions[i].replace(a.side, b.side)
    with pytest.raises(ValueError, match="even"):
        shapes.batch(np.random.default_rng(5), 3, 32, mirror_pairs=True)
