"""Parts of modules.distributed that need no cluster: the worker choice (scheduling), flags, no Ray by default."""
from modules.distributed.scheduling import Slot, Want, plan


def _plan(slots, wants):
    return [(w.key, s.key) for w, s in plan(slots, wants)]


def test_a_job_goes_to_the_idle_worker_that_holds_its_checkpoint():
    slots = [Slot("w0", ("a",)), Slot("w1", ("b",))]
    assert _plan(slots, [Want(1, "b"), Want(2, "a")]) == [(1, "w1"), (2, "w0")]


def test_a_new_checkpoint_goes_where_a_load_evicts_nothing_wanted():
    slots = [Slot("w0", ("a",)), Slot("w1", ("b",))]
    # c is held by nobody: it must be loaded; w1's b is wanted by nobody waiting, w0's a is
    assert _plan(slots, [Want(1, "c"), Want(2, "a")]) == [(2, "w0"), (1, "w1")]
    assert _plan([Slot("w0", ("a",)), Slot("w1", ())], [Want(1, "c")]) == [(1, "w1")]


def test_a_lone_job_waits_for_the_busy_worker_with_its_checkpoint_rather_than_evict():
    slots = [Slot("w0", ("a",)), Slot("w1", ("b",), busy=True)]
    assert _plan(slots, [Want(1, "b")]) == []
    # ...but it spreads when more jobs wait for b than workers hold it
    assert _plan(slots, [Want(1, "b"), Want(2, "b")]) == [(1, "w0")]
    # ...and uses an empty worker at once (nothing to evict)
    assert _plan([Slot("w0", ()), Slot("w1", ("b",), busy=True)], [Want(1, "b")]) == [(1, "w0")]


def test_alternating_checkpoints_keep_to_their_workers():
    slots = [Slot("w0", ()), Slot("w1", ())]
    wants = [Want(i, "ab"[i % 2]) for i in range(8)]
    first = _plan(slots, wants)
    assert first == [(0, "w0"), (1, "w1")]
    for done in ("w0", "w1", "w0", "w1", "w0", "w1"):  # whichever finishes takes its own model's next job
        next(s for s in slots if s.key == done).busy = False
        waiting = [w for w in wants if w.key not in {k for k, _ in first}]
        step = _plan(slots, waiting)
        first += step
        assert all("ab"[k % 2] == ("a" if s == "w0" else "b") for k, s in step)
    assert sorted(k for k, _ in first) == list(range(8))


def test_jobs_without_a_checkpoint_take_any_idle_worker_in_order():
    slots = [Slot("w0", ("a",)), Slot("w1", ("b",), busy=True)]
    assert _plan(slots, [Want(1, None), Want(2, None)]) == [(1, "w0")]


def test_the_default_start_imports_no_ray(tmp_path):
    """Without --workers / --ray-address the server's start-up path never imports Ray."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from modules import cmd_args, distributed, generation, startup; import webui.server\n"
            "from modules.context import create_context\n"
            f"args = cmd_args.parse_args(['--nowebui', '--data-dir', {str(tmp_path)!r}])\n"
            "ctx = create_context(args); assert not distributed.wanted(args)\n"
            "startup.attach_engine(ctx, preload=False, load_extensions=False)\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_worker_flags_are_checked():
    import pytest

    from modules import cmd_args

    args = cmd_args.parse_args(["--workers", "2", "--worker-threads", "3"])
    assert args.workers == 2 and args.worker_threads == 3 and args.ray_address is None
    assert cmd_args.parse_args(["--ray-address", "10.0.0.1:6379"]).ray_address == "10.0.0.1:6379"
    with pytest.raises(cmd_args.ArgumentError, match="--workers 0"):
        cmd_args.parse_args(["--workers", "0"])


def test_device_errors_restart_a_worker_other_errors_do_not():
    from modules.distributed.worker import is_device_lost

    assert is_device_lost(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_device_lost(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_device_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_device_lost(ValueError("CUDA error"))


def test_a_random_seed_is_drawn_before_the_first_try_and_kept_for_a_rerun():
    from modules.distributed.handoff import fixed_seeds
    from modules.generation import GenerationRequest
    from modules.generation.validate import Prepared

    def prepared(task, params):
        return Prepared(task=task, params=params, override_settings={}, restore_settings=True, scripts=None)

    request = GenerationRequest("txt2img", {"prompt": "x", "seed": -1})
    fixed = fixed_seeds(request, prepared("txt2img", {"seed": -1, "subseed": -1}))
    assert fixed.params["seed"] >= 0 and fixed.params["subseed"] >= 0 and request.params["seed"] == -1
    given = fixed_seeds(GenerationRequest("txt2img", {"seed": 7}), prepared("txt2img", {"seed": 7, "subseed": 3}))
    assert given.params == {"seed": 7}  # nothing to draw
    # a seed pasted from an infotext (the request itself has none) is kept as prepare resolved it
    pasted = fixed_seeds(GenerationRequest("txt2img", {}, infotext="x\nSeed: 5"), prepared("txt2img", {"seed": 5}))
    assert "seed" not in pasted.params and pasted.params["subseed"] >= 0
    assert fixed_seeds(GenerationRequest("extras", {}), prepared("extras", {})).params == {}


def test_a_worker_s_progress_is_mirrored_onto_the_front_end_job():
    from modules.distributed.handoff import mirror
    from modules.jobs import Job

    job = Job("txt2img")
    job.skip()
    snap = {"job_no": 0, "job_count": 2, "sampling_step": 3, "sampling_steps": 10, "textinfo": "Batch 1 out of 2",
            "preview_seq": 1, "preview": "image"}
    assert mirror(job, snap, 0) == 1
    assert (job.job_count, job.sampling_step, job.sampling_steps, job.current_image) == (2, 3, 10, "image")
    assert job.skipped and job.progress_fraction() == 0.15
    mirror(job, {**snap, "job_no": 1, "sampling_step": 1, "preview": None}, 1)
    assert not job.skipped and job.current_image == "image"  # skip covers one image; the preview stays
