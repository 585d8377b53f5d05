"""The token grounding loss the depth demo trains with: the attention it reads is the attention the
UNet uses, it is low when each thing's pixels attend to the noun naming that thing and high when they
attend to the other's, and training on it teaches a real (tiny) UNet the routing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modules.ldm.attention import CrossAttention
from modules.training.grounding_loss import CrossAttentionMaps, grounding_loss
from tests.tiny import make_tiny_model

CAPTION = "a green circle and a yellow square"


def halves(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((size, size), bool)
    left[:, : size // 2] = True
    return left, ~left


@pytest.fixture(scope="module")
def text_encoder():
    return make_tiny_model("tiny-v2-depth").cond_stage_model


def test_recorded_maps_are_the_attention_the_layer_used():
    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"attn2": CrossAttention(16, 8, heads=1, dim_head=16)})
    x, context = torch.randn(2, 64, 16), torch.randn(2, 77, 8)
    with CrossAttentionMaps(net, min_grid=8) as maps:
        out = net["attn2"](x, context)
    (attn,) = maps.maps
    assert attn.shape == (2, 64, 77)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 64))
    attn2 = net["attn2"]
    torch.testing.assert_close(attn2.to_out(attn @ attn2.to_v(context)), out)
    with CrossAttentionMaps(net, min_grid=16) as coarse:  # an 8x8 grid is under 16x16: not recorded
        net["attn2"](x, context)
    assert coarse.maps == []


def routed(text_encoder, pixel_to_noun: dict[str, np.ndarray], grid: int = 8) -> torch.Tensor:
    """An attention map [1, grid*grid, 77] where the pixels of each mask attend to that noun only."""
    ids = text_encoder.tokenize([CAPTION])[0].tolist()
    attn = torch.zeros(1, grid * grid, 77)
    attn[..., 0] = 1.0  # pixels of no thing attend to BOS
    for noun, mask in pixel_to_noun.items():
        cells = torch.from_numpy(mask[:: mask.shape[0] // grid, :: mask.shape[1] // grid].reshape(-1))
        attn[0, cells, 0] = 0.0
        attn[0, cells, ids.index(text_encoder.tokenizer.encode(noun)[0])] = 1.0
    return attn


def test_the_loss_rewards_pixels_that_attend_to_their_own_noun(text_encoder):
    left, right = halves()
    grounding = [[("circle", left), ("square", right)]]
    right_way = routed(text_encoder, {"circle": left, "square": right})
    wrong_way = routed(text_encoder, {"circle": right, "square": left})
    uniform = torch.full((1, 64, 77), 1 / 77)
    loss = {name: float(grounding_loss([a], text_encoder, [CAPTION], grounding))
            for name, a in (("right", right_way), ("wrong", wrong_way), ("uniform", uniform))}
    assert loss["right"] < 1e-3 < loss["uniform"] < loss["wrong"], loss
    # an empty caption (classifier-free guidance's unconditional share) is not grounded
    assert float(grounding_loss([wrong_way], text_encoder, [""], [[]])) == 0.0


def test_a_noun_must_be_one_token_named_once(text_encoder):
    left, right = halves()
    attn = torch.full((1, 64, 77), 1 / 77)
    with pytest.raises(ValueError, match="one token"):
        grounding_loss([attn], text_encoder, ["a green dodecahedron"], [[("dodecahedron", left)]])
    with pytest.raises(ValueError, match="once in the caption"):
        grounding_loss([attn], text_encoder, ["a green circle"], [[("square", right)]])


def test_training_on_it_routes_a_tiny_unets_pixels_to_their_nouns(text_encoder):
    """A real tiny depth UNet and text encoder, a fixed batch of colour-swap pairs seen through the
    training's grounding pass (each caption over its partner's noisy latent: the colours showing through
    are the wrong ones): 40 steps of the grounding loss alone make the shapes' pixels attend to their
    own noun."""
    from modules.training.demo_scenes import scene_pairs
    from modules.training.diffusion_loss import draw_timesteps
    from modules.training.train_diffusion import grounding_pass

    model = make_tiny_model("tiny-v2-depth")
    images, captions, grounding = scene_pairs(np.random.default_rng(4), 8, 64)
    assert any(c and len(g) > 1 for c, g in zip(captions, grounding, strict=True)), "want scenes of several shapes"
    x = torch.from_numpy(images)
    with torch.no_grad():
        z = model.get_first_stage_encoding(model.encode_first_stage(x), torch.Generator().manual_seed(0))
    depth = F.interpolate(x.mean(1, keepdim=True), size=z.shape[-2:], mode="area")  # any picture-shaped map
    t = draw_timesteps(model, len(x), torch.Generator().manual_seed(1), shared_pairs=True)
    unet = model.model.diffusion_model
    unet.requires_grad_(True)
    model.cond_stage_model.requires_grad_(True)
    opt = torch.optim.Adam([*unet.parameters(), *model.cond_stage_model.parameters()], lr=2e-3)

    def loss() -> torch.Tensor:
        cond = {"c_concat": [depth], "c_crossattn": [model.get_learned_conditioning(captions)]}
        maps = grounding_pass(model, z, t, cond, torch.Generator().manual_seed(2)).maps
        return grounding_loss(maps, model.cond_stage_model, captions, grounding)

    before = float(loss())
    for _ in range(40):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    after = float(loss())
    assert after < 0.2 * before, (before, after)


def test_timesteps_drawn_by_the_caller_give_the_same_loss():
    """The grounded training draws the timesteps itself (to ground only the noisy ones); the diffusion
    loss is then the same as when it draws them (same generator state, pairs sharing theirs)."""
    from modules.training.diffusion_loss import diffusion_loss, draw_timesteps

    model = make_tiny_model("tiny-v2-depth")
    z = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = {"c_concat": [torch.rand(4, 1, 8, 8)], "c_crossattn": [model.get_learned_conditioning([CAPTION] * 4)]}
    own = diffusion_loss(model, z, cond, torch.Generator().manual_seed(5), shared_pairs=True)
    g = torch.Generator().manual_seed(5)
    t = draw_timesteps(model, 4, g, shared_pairs=True)
    assert t[0] == t[2] and t[1] == t[3]
    torch.testing.assert_close(diffusion_loss(model, z, cond, g, shared_pairs=True, timesteps=t), own)


def test_the_depth_stage_trains_with_grounding_and_exports(tmp_path):
    """The recipe's stages at 2 steps each (the depth stage's second with the grounding loss): the depth
    UNet trains on the scenes' masks (its checkpoint holds the steps), the export loads in the app as a
    depth model."""
    from modules.models.loader import load_checkpoint
    from modules.training import demo_scenes

    def run(*argv):
        demo_scenes.main(["--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--eval-every", "0",
                          *argv])

    run("--stage", "autoencoder", "--ae-steps", "2")
    run("--stage", "midas", "--midas-steps", "2")
    run("--stage", "depth", "--depth-steps", "2", "--grounding-start", "1")
    assert torch.load(tmp_path / "work" / "depth.pt", weights_only=True)["step"] == 2
    run("--stage", "export")
    model = load_checkpoint(tmp_path / "out" / "demo-depth" / "demo-depth.safetensors").model
    assert model.depth_model is not None and model.model.diffusion_model.config.in_channels == 5


def test_grounding_needs_colour_swap_pairs():
    from modules.training.train_diffusion import DiffusionTraining, train_diffusion

    cfg = DiffusionTraining(steps=1, batch_size=2, grounding_weight=0.1, mirror_pairs=False)
    with pytest.raises(ValueError, match="mirror_pairs"):
        train_diffusion(make_tiny_model("tiny-v2-depth"), cfg, seed=0)
