"""The inpainting fine-tune: a txt2img model grows zero-initialised mask/latent input channels, and
the objective learns with the image conditioning the app uses at inference."""
from __future__ import annotations

import numpy as np
import torch

from modules.training import shapes
from modules.training.diffusion_loss import diffusion_loss
from modules.training.train_inpaint import inpainting_conditioning, inpainting_unet_state, random_masks
from tests.tiny import make_tiny_model


def _inpainting_twin(txt2img):
    """tiny-v1-inpainting with the txt2img model's weights (first conv widened with zeros)."""
    model = make_tiny_model("tiny-v1-inpainting")
    model.load_state_dict(txt2img.state_dict() | {
        f"model.diffusion_model.{k}": v
        for k, v in inpainting_unet_state(txt2img.model.diffusion_model.state_dict()).items()})
    return model


def test_zero_initialised_channels_start_from_the_txt2img_model():
    txt2img = make_tiny_model("tiny-v1")
    model = _inpainting_twin(txt2img)
    images, captions, _ = shapes.batch(np.random.default_rng(0), 2, 64, drop=False)
    x = torch.from_numpy(images)
    masks = torch.from_numpy(random_masks(np.random.default_rng(1), 2, 64, grid=8))
    with torch.no_grad():
        c_concat = inpainting_conditioning(model, x, masks)
        assert c_concat.shape == (2, 5, 8, 8)
        z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        t = torch.tensor([10, 900])
        text = txt2img.get_learned_conditioning(captions)
        plain = txt2img.apply_model(z, t, text)
        inpaint = model.apply_model(z, t, {"c_crossattn": [text], "c_concat": [c_concat]})
    torch.testing.assert_close(inpaint, plain, rtol=1e-5, atol=1e-5)


def test_masks_lie_on_the_latent_grid_and_cover_every_kind():
    masks = random_masks(np.random.default_rng(0), 64, 32, grid=4)
    assert masks.shape == (64, 1, 32, 32) and set(np.unique(masks)) <= {0.0, 1.0}
    blocks = masks.reshape(64, 8, 4, 8, 4)
    assert (blocks.min(axis=(2, 4)) == blocks.max(axis=(2, 4))).all()  # constant on each 4x4 cell
    share = masks.mean(axis=(1, 2, 3))
    assert (share == 1.0).sum() >= 8  # full masks: the model keeps doing txt2img
    assert (share == 0.5).sum() >= 8  # left / right halves
    assert ((share > 0) & (share < 1)).sum() >= 20


def test_the_inpainting_objective_learns_a_fixed_batch():
    model = _inpainting_twin(make_tiny_model("tiny-v1"))
    images, captions, _ = shapes.batch(np.random.default_rng(0), 4, 64, drop=False)
    x = torch.from_numpy(images)
    masks = torch.from_numpy(random_masks(np.random.default_rng(2), 4, 64, grid=8))
    with torch.no_grad():
        z = model.get_first_stage_encoding(model.encode_first_stage(x).mode())
        c_concat = inpainting_conditioning(model, x, masks)
    nets = [model.model.diffusion_model, model.cond_stage_model]
    params = [p for n in nets for p in n.parameters()]
    for n in nets:
        n.train().requires_grad_(True)
    opt = torch.optim.Adam(params, lr=2e-3)

    def loss_now():
        cond = {"c_crossattn": [model.get_learned_conditioning(captions)], "c_concat": [c_concat]}
        return diffusion_loss(model, z, cond, torch.Generator().manual_seed(1))

    first = loss_now().item()
    for _ in range(20):
        opt.zero_grad()
        loss_now().backward()
        opt.step()
    last = loss_now().item()
    assert last < 0.7 * first, (first, last)
    # the new input channels did learn (they started at zero)
    assert model.model.diffusion_model.input_blocks[0][0].weight[:, 4:].abs().max() > 0


def test_the_fine_tune_starts_from_the_ema_weights():
    """build_inpainting_model takes ema_state_dict: EMA values, kept after the swap is undone."""
    from modules.training.train_diffusion import ema_state_dict, trainable
    from modules.training.trainer import OptimizerSpec, Trainer

    model = make_tiny_model("tiny-v1")
    nets = trainable(model)
    trainer = Trainer(nets, {"d": OptimizerSpec([p for n in nets.values() for p in n.parameters()], 1e-3)},
                      total_steps=1, seed=0, ema={n: 0.9 for n in nets})
    with torch.no_grad():  # the raw weights move away from their average
        for p in model.model.diffusion_model.parameters():
            p.add_(1.0)
    state = ema_state_dict(model, trainer)
    key = "model.diffusion_model.out.2.weight"
    ema = trainer.averaged("unet").state_dict()["out.2.weight"]
    torch.testing.assert_close(state[key], ema)
    assert not torch.equal(state[key], model.state_dict()[key])  # the model has its raw weights back
