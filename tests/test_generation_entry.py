"""The engine's one entry point (modules.generation): what every front end relies on.

A checkpoint switch from anywhere waits for a running job; an interrupt reaches prompt encoding;
engine errors arrive as RequestError with a status; settings overrides are applied once and restored.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from modules import generation
from modules.errors import RequestError
from modules.generation import GenerationRequest
from modules.jobs import Job
from modules.processing.objects import ProcessingCallbacks
from tests.api_support import make_context, make_data_dir

SMALL = {"width": 64, "height": 64, "steps": 6, "seed": 11, "sampler_name": "Euler", "prompt": "a red circle"}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("entry")))
    ctx.models.load("tiny-a")
    return ctx


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"))


def test_a_checkpoint_switch_waits_for_the_running_job(ctx):
    """The web UI's job holds the model lock: a switch (top bar, /options, a script) issued while
    it samples lands only after its last step, and the job's image is model A's throughout."""
    ctx.models.load("tiny-a")
    alone = generation.submit(ctx, GenerationRequest("txt2img", dict(SMALL)))
    at_step, release = threading.Event(), threading.Event()
    order = []

    def pause_at_step_3(params):
        if params.sampling_step == 3 and not at_step.is_set():
            at_step.set()
            release.wait(30)
    hooks = ctx.services.callbacks = ProcessingCallbacks()
    hooks.cfg.on_cfg_denoiser.append(pause_at_step_3)
    try:
        results = {}
        job = threading.Thread(target=lambda: results.update(r=generation.submit(
            ctx, GenerationRequest("txt2img", dict(SMALL)))) or order.append("job done"))
        job.start()
        assert at_step.wait(30)
        switch = threading.Thread(target=lambda: ctx.models.load("tiny-b") and order.append("switched"))
        switch.start()
        switch.join(0.5)
        assert switch.is_alive()  # blocked by the job's lock, not switching under it
        release.set()
        job.join(30)
        switch.join(30)
    finally:
        ctx.services.callbacks = None
    assert order == ["job done", "switched"]
    assert ctx.models.current.info.title.startswith("tiny-b")
    assert np.array_equal(pixels(results["r"]), pixels(alone))  # model A all the way through
    ctx.models.load("tiny-a")


def test_overrides_are_applied_for_the_job_and_restored_once(ctx):
    result = generation.submit(ctx, GenerationRequest("txt2img", dict(SMALL),
                                                      override_settings={"CLIP_stop_at_last_layers": 2}))
    assert "Clip skip: 2" in result.infotext and ctx.opts.CLIP_stop_at_last_layers == 1
    switched = generation.submit(ctx, GenerationRequest("txt2img", dict(SMALL),
                                                        override_settings={"sd_model_checkpoint": "tiny-b"}))
    assert "Model: tiny-b" in switched.infotext and ctx.models.current.info.title.startswith("tiny-a")


def test_an_interrupt_stops_a_long_prompt_between_chunks(ctx):
    """A prompt of thousands of tokens is encoded chunk by chunk; Interrupt stops it in between
    (the queue is free again at once), and the result says so instead of failing."""
    long_prompt = "a red circle, " * 1400  # ~5,600 tokens: 75 chunks

    class PressedDuringEncoding(Job):
        """Interrupt pressed once the job has looked twice (the batch loop, then the first chunk)."""
        reads = 0

        @property
        def interrupted(self):
            self.reads += 1
            return self.reads > 2
    job = PressedDuringEncoding("txt2img")
    result = generation.submit(ctx, GenerationRequest("txt2img", {**SMALL, "prompt": long_prompt}), job)
    assert result.interrupted and result.images == [] and "encoding the prompt (chunk 2 of" in result.comments
    assert job.reads == 3 and ctx.jobs.current is None


def test_engine_errors_become_request_errors_with_a_status(ctx):
    with pytest.raises(RequestError) as e:
        generation.run(ctx, GenerationRequest("txt2img", {**SMALL, "steps": 0}))
    assert (e.value.status, e.value.field) == (422, "steps")
    with pytest.raises(RequestError) as e:
        generation.run(ctx, GenerationRequest("img2img", dict(SMALL)))
    assert e.value.field == "init_images" and "init image" in str(e.value)
    with pytest.raises(RequestError) as e:
        generation.run(ctx, GenerationRequest("upscale-everything"))
    assert e.value.field == "task"
    with pytest.raises(RequestError) as e:  # found only once running: a size that is not a multiple of 8 is fine,
        generation.run(ctx, GenerationRequest("txt2img", {**SMALL, "width": 7}))  # one under 8 is not
    assert e.value.status == 422


def test_a_prompt_over_the_limit_is_refused_before_it_is_queued(ctx):
    with pytest.raises(RequestError, match="at most 20,000") as e:
        generation.prepare(ctx, GenerationRequest("txt2img", {"prompt": "x" * (generation.MAX_PROMPT_LENGTH + 1)}))
    assert e.value.field == "prompt" and ctx.jobs.queue_length() == 0
