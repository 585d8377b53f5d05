"""The depth / x4 demos' training data and code: scenes with known depth, their measures, the depth
estimator's objective, the conditioning the UNets train on, export of the x4 layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.training import scene_metrics as sm
from modules.training import scenes
from modules.training.shapes import COLORS
from tests.test_midas import TINY, tiny_midas
from tests.tiny import make_tiny_model


def test_floor_depth_is_linear_in_the_row_and_the_wall_is_flat():
    scene = scenes.Scene(things=(), horizon=0.3, floor_distance=3.0, wall_distance=5.0)
    depth = scenes.render_depth(scene, 64)
    assert np.allclose(depth, depth[:, :1])  # no shapes: each row has one depth
    column = depth[:, 0]
    wall_rows = int(scene.wall_line * 64)
    assert np.allclose(column[: wall_rows - 1], 1 / 5.0)
    rows = (np.arange(wall_rows + 2, 64) + 0.5) / 64  # inverse depth = (y - horizon) / ((1 - horizon) * 3)
    np.testing.assert_allclose(column[wall_rows + 2:], (rows - 0.3) / (0.7 * 3.0), atol=1e-5)
    assert column[-1] == pytest.approx(1 / 3.0, abs=0.01)  # the bottom row sees the floor at distance 3


def test_nearer_shapes_are_larger_and_carry_their_depth_before_the_background():
    near, far = scenes.Thing("red", "square", 0.3, 0.6, 1.3), scenes.Thing("blue", "square", 0.7, 0.4, 2.4)
    scene = scenes.Scene(things=(near, far))
    masks = scenes.render_masks(scene, 64)
    assert masks[0].sum() > 3 * masks[1].sum()  # width ~ 1 / Z
    depth = scenes.render_depth(scene, 64)
    assert np.allclose(depth[masks[0]].mean(), 1 / 1.3, atol=0.01)
    assert np.allclose(depth[masks[1]].mean(), 1 / 2.4, atol=0.01)
    background = scenes.render_depth(scenes.Scene(things=()), 64)
    assert background.max() < 1 / scenes.DISTANCES[1]  # every shape is nearer than any of the background
    picture = scenes.render(scene, 64)
    assert [sm.region_color(picture, m) for m in masks] == ["red", "blue"]
    assert sm.distance(sm.centre(masks[0]), (0.3 * 64, 0.6 * 64)) < 1
    assert sm.distance(sm.centre(masks[1]), (0.7 * 64, 0.4 * 64)) < 1


def test_nearer_shapes_hide_farther_ones():
    scene = scenes.Scene(things=(scenes.Thing("blue", "square", 0.5, 0.5, 2.2),
                                 scenes.Thing("red", "circle", 0.5, 0.5, 1.5)))
    picture, depth = scenes.render(scene, 64), scenes.render_depth(scene, 64)
    far, near = scenes.render_masks(scene, 64)
    assert not (far & near).any() and far.sum() == 0  # the nearer circle is larger: nothing of the square shows
    assert sm.region_color(picture, near) == "red" and depth[32, 32] == pytest.approx(1 / 1.5)


def test_sampled_scenes_keep_their_shapes_inside_the_picture():
    rng = np.random.default_rng(0)
    for _ in range(100):
        for t in scenes.sample_scene(rng).things:
            assert t.width / 2 < t.x < 1 - t.width / 2 and t.width / 2 < t.y < 1 - t.width / 2


def test_captions_name_every_shape_with_its_colour():
    rng = np.random.default_rng(3)
    for _ in range(50):
        scene = scenes.sample_scene(rng)
        text = scenes.caption(scene)
        assert len({t.shape for t in scene.things}) == len(scene.things)  # one of each kind
        for thing in scene.things:
            assert f"{thing.color} {thing.shape}" in text
    three = scenes.sample_scene(np.random.default_rng(0), n=3)
    shuffled = {scenes.caption(three, np.random.default_rng(i)) for i in range(40)}
    assert "" in shuffled and len(shuffled) > 2  # random order, and empty captions for guidance
    two = scenes.Scene(things=(scenes.Thing("red", "circle", 0.3, 0.5, 2), scenes.Thing("orange", "square", 0.7, 0.5, 2)))
    assert scenes.caption(two) == "a red circle and an orange square"


def test_batches_are_seeded_and_in_the_training_format():
    a = scenes.batch(np.random.default_rng(7), 4, 32)
    b = scenes.batch(np.random.default_rng(7), 4, 32)
    images, depth, captions, _ = a
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32 and -1 <= images.min() <= images.max() <= 1
    assert depth.shape == (4, 1, 32, 32) and 0 < depth.min() and depth.max() <= 1 / scenes.DISTANCES[0]
    assert np.array_equal(images, b[0]) and captions == b[2]


def test_swap_pairs_differ_only_in_the_colours_and_their_words():
    images, depth, captions, pairs = scenes.batch(np.random.default_rng(5), 8, 32, swap_pairs=True)
    for a, b, ca, cb in zip(pairs[:4], pairs[4:], captions[:4], captions[4:], strict=True):
        assert [(t.shape, t.x, t.y, t.distance) for t in a.things] == [(t.shape, t.x, t.y, t.distance) for t in b.things]
        assert [t.color for t in a.things] != [t.color for t in b.things]
        if ca:  # the same shapes named in the same order, each with its own colour
            for thing in b.things:
                assert f"{thing.color} {thing.shape}" in cb
            assert [w for w in ca.split() if w in scenes.SHAPES] == [w for w in cb.split() if w in scenes.SHAPES]
    np.testing.assert_array_equal(depth[:4], depth[4:])


def test_scene_metrics():
    picture = np.full((16, 16, 3), 128, np.uint8)
    picture[4:8, 2:6] = COLORS["green"]
    region = np.zeros((16, 16), bool)
    region[3:9, 1:7] = True
    assert sm.region_color(picture, region) == "green"
    assert sm.centre(sm.color_mask(picture, "green")) == (4.0, 6.0)
    assert sm.region_color(picture, ~region) is None  # gray there
    assert sm.psnr(picture, picture) == float("inf")
    noisy = np.clip(picture.astype(int) + 10, 0, 255).astype(np.uint8)
    assert sm.psnr(noisy, picture) == pytest.approx(10 * np.log10(255 ** 2 / 100), abs=0.01)
    assert sm.correlation(np.arange(10), 3 * np.arange(10) + 1) == pytest.approx(1.0)


def test_depth_estimator_objective_learns_a_fixed_batch():
    from modules.training.train_midas import depth_loss, init_positive_output

    midas = tiny_midas().train().requires_grad_(True)
    for p in midas.parameters():  # tiny_midas draws every weight at std 0.2: start from sane scales instead
        p.data.mul_(0.25)
    init_positive_output(midas)
    images, depth, _, _ = scenes.batch(np.random.default_rng(0), 4, TINY["img_size"])
    x, target = torch.from_numpy(images), torch.from_numpy(depth)
    opt = torch.optim.Adam(midas.parameters(), lr=2e-3)
    first = depth_loss(midas(x), target, 1.0).item()
    for _ in range(30):
        loss = depth_loss(midas(x), target, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, (first, loss.item())
    assert depth_loss(target, target, 1.0).item() == 0


def test_x4_training_conditioning_is_the_noised_box_filtered_picture():
    from modules.training.demo_scenes import x4_conditioning

    model = make_tiny_model("tiny-x4")
    images = torch.from_numpy(scenes.batch(np.random.default_rng(1), 3, 64)[0])
    parts = x4_conditioning(model, images, np.random.default_rng(2))
    noised, level = parts["c_concat"][0], parts["c_adm"]
    assert noised.shape == (3, 3, 16, 16) and level.shape == (3,) and 0 <= int(level.min()) <= int(level.max()) < 350
    low = torch.nn.functional.avg_pool2d(images, 4)
    a = model.low_scale_model.sqrt_alphas_cumprod[level].view(-1, 1, 1, 1)
    b = model.low_scale_model.sqrt_one_minus_alphas_cumprod[level].view(-1, 1, 1, 1)
    noise = (noised - a * low) / b  # what is left is unit Gaussian noise
    assert abs(noise.std().item() - 1) < 0.15 and abs(noise.mean().item()) < 0.15


def test_depth_training_conditioning_is_what_the_depth2img_tab_makes():
    from modules.processing.depth2img import depth_image_conditioning
    from modules.training.demo_scenes import depth_conditioning

    model = make_tiny_model("tiny-v2-depth")
    model.depth_model = tiny_midas()
    images = torch.from_numpy(scenes.batch(np.random.default_rng(1), 2, 64)[0])
    cond = depth_conditioning(model, images, np.random.default_rng(0))
    assert cond.shape == (2, 1, 8, 8)
    torch.testing.assert_close(cond, depth_image_conditioning(model, images).cond)


def test_x4_export_keeps_the_noise_schedule_in_float32(tmp_path):
    from modules.ldm.config import load_config
    from modules.models.loader import load_checkpoint
    from modules.training.export import export
    from tests.tiny import tiny_config_path

    model = make_tiny_model("tiny-x4", seed=2)
    path = tmp_path / "x4.safetensors"
    export(model, load_config(tiny_config_path("tiny-x4")), path)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("low_scale_model.sqrt_one_minus_alphas_cumprod").dtype == torch.float32
        assert f.get_tensor("model.diffusion_model.label_emb.weight").dtype == torch.float16
    loaded = load_checkpoint(path).model
    torch.testing.assert_close(loaded.low_scale_model.sqrt_alphas_cumprod, model.low_scale_model.sqrt_alphas_cumprod,
                               rtol=0, atol=0)


def test_decoder_stage_keeps_the_latent_space_the_unets_learned(tmp_path):
    """Stage 2 fine-tunes the decoder only: the encoder (so every latent a UNet trained on) and the
    latent scale factor stay bit-identical, the decoder changes, and the models are built with it."""
    from modules.training import demo_scenes

    def run(*argv):
        demo_scenes.main(["--workdir", str(tmp_path), "--eval-every", "0", *argv])

    run("--stage", "autoencoder", "--ae-steps", "2")
    args = demo_scenes.parse_args(["--workdir", str(tmp_path)])
    before = demo_scenes.trained_autoencoder(args)
    run("--stage", "decoder", "--decoder-steps", "2")
    after = demo_scenes.trained_autoencoder(args)
    for name, tensor in before.state_dict().items():
        same = torch.equal(tensor, after.state_dict()[name])
        assert same == (not name.startswith(("decoder.", "post_quant_conv."))), name
    model, _ = demo_scenes.build_model(args, "x4")
    torch.testing.assert_close(model.first_stage_model.decoder.state_dict(), after.decoder.state_dict(), rtol=0, atol=0)
    x = torch.from_numpy(demo_scenes.scene_pictures(np.random.default_rng(3), 2, 64))
    torch.testing.assert_close(model.first_stage_model.encode(x).mode(), before.encode(x).mode(), rtol=0, atol=0)
