"""--medvram / --lowvram (modules.models.offload) on the CPU: which parts take turns, in which order,
and that a job gives the same image. What it saves on a GPU is measured by tests/test_cuda.py."""
from __future__ import annotations

import numpy as np
import pytest

from modules import generation
from modules.generation import GenerationRequest
from modules.models.offload import Offloader, split_parts
from tests.api_support import make_context, make_data_dir
from tests.tiny import make_tiny_model

SMALL = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 3, "seed": 5, "sampler_name": "Euler"}


def test_medvram_parts_are_the_networks_and_lowvram_splits_the_unet():
    model = make_tiny_model("tiny-v1")
    unet = model.model.diffusion_model
    med = split_parts(model, "med")
    assert med == [model.model, model.first_stage_model, model.cond_stage_model]
    low = split_parts(model, "low")
    assert low == [*unet.input_blocks, *unet.output_blocks, unet.middle_block, model.first_stage_model,
                   model.cond_stage_model]
    with pytest.raises(ValueError, match="offload mode"):
        split_parts(model, "tiny")


def test_sd3_parts_are_its_text_encoders_vae_and_mmdit_and_lowvram_splits_the_joint_blocks():
    from tests.tiny_sd3 import make_tiny_sd3
    model = make_tiny_sd3()
    assert split_parts(model, "med") == [model.model, model.first_stage_model, model.text_encoders]
    mmdit = model.model.diffusion_model
    assert split_parts(model, "low") == [*mmdit.joint_blocks, model.first_stage_model, model.text_encoders]


class RecordingOffloader(Offloader):
    """Notes which part came in, by name."""

    def __init__(self, model, *a, **kw):
        super().__init__(*a, **kw)
        self.names = {id(m): n for n, m in model.named_modules()}
        self.order: list[str] = []

    def _enter(self, part, args, kwargs):
        if self.resident is not part:
            self.order.append(self.names[id(part)])
        return super()._enter(part, args, kwargs)


@pytest.mark.parametrize("mode", ["med", "low"])
def test_a_job_with_parts_taking_turns_gives_the_same_image(tmp_path, mode):
    ctx = make_context(make_data_dir(tmp_path))
    plain = generation.submit(ctx, GenerationRequest("txt2img", dict(SMALL)))
    model = ctx.models.current.model
    offloader = RecordingOffloader(model, "cpu").install(model, mode)
    try:
        again = generation.submit(ctx, GenerationRequest("txt2img", dict(SMALL)))
    finally:
        offloader.remove()
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(again.images[0]))
    order = offloader.order
    assert order[0] == "cond_stage_model" and order[-1] == "first_stage_model"  # prompt, sampling, decode
    if mode == "med":
        assert order == ["cond_stage_model", "model", "first_stage_model"]
    else:  # every block comes in at every UNet call (3 steps x cond/uncond in one batch)
        blocks = [n for n in order if "_block" in n]
        assert len(blocks) == 3 * len(split_parts(model, "low")[:-2]) and offloader.loads == len(order)


def test_offload_applies_on_a_gpu_only():
    from modules import cmd_args, devices
    args = cmd_args.parse_args(["--medvram", "--use-cpu", "all"])
    assert devices.policy_from_args(args).offload == "none"  # one memory on the CPU: nothing to move
