"""Jobs on Ray workers (modules.distributed): a local Ray cluster (a head node with 2 CPUs, started
once for this module; a test adds and removes a second node) joined as `--ray-address` does, so one
CPU worker per CPU, in front of tiny checkpoints. Each result is compared with what the
single-process app makes for the same request.

A test extension ("Worker probe") runs where the job runs: its AlwaysVisible script writes the
process id into the infotext, and its on_cfg_denoiser callback sleeps the script's "step delay"
every sampling step, so a test can act at a given step (sleeping changes no pixel).
"""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from modules import cmd_args, generation
from modules.context import create_context
from modules.generation import GenerationRequest
from tests.api_support import make_context, make_data_dir
from tests.extensions_support import write_extension

pytest.importorskip("ray", reason="Ray is in requirements-ray.txt (launch.py --test installs it)")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

PROBE = {
    "scripts/probe.py": '''
        import os
        import time

        import gradio as gr
        from modules import scripts, script_callbacks

        DELAY = [0.0]

        def slow_step(params):
            time.sleep(DELAY[0])

        script_callbacks.on_cfg_denoiser(slow_step)

        class WorkerProbe(scripts.Script):
            def title(self):
                return "Worker probe"

            def show(self, is_img2img):
                return scripts.AlwaysVisible

            def ui(self, is_img2img):
                return [gr.Number(label="Step delay", value=0.0)]

            def process(self, p, delay):
                DELAY[0] = float(delay or 0.0)
                p.extra_generation_params["Worker pid"] = os.getpid()
    ''',
}


def _ckpt(ctx, name: str) -> str:
    return next(t for t in ctx.models.catalog.titles() if t.startswith(name + "."))


def _request(ctx, seed: int, ckpt: str = "tiny-a", delay: float = 0.0, steps: int = 6, prompt="a red circle",
             positional: bool = False) -> GenerationRequest:
    params = {"prompt": prompt, "steps": steps, "width": 64, "height": 64, "seed": seed, "cfg_scale": 5.0,
              "sampler_name": "Euler a", "do_not_save_samples": True}
    overrides = {"sd_model_checkpoint": _ckpt(ctx, ckpt)}
    if positional:  # as the web UI sends scripts: [dropdown index, *every control]
        return GenerationRequest("txt2img", params, overrides, ui_script_args=[0, delay])
    return GenerationRequest("txt2img", params, overrides, alwayson_scripts={"Worker probe": {"args": [delay]}})


def _pid(infotext: str) -> int:
    return int(infotext.split("Worker pid: ")[1].split(",")[0].split("\n")[0])


def _same_image(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture(scope="module")
def cluster():
    """(front end ctx with 2 workers, single-process ctx over the same data dir, the Ray nodes)."""
    from ray.cluster_utils import Cluster

    from modules import distributed
    from modules.plugins.manager import load_extensions
    from webui.ui.scripts_ui import sandbox

    root = Path(tempfile.mkdtemp(prefix="sd-dist-"))
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    make_data_dir(root)
    write_extension(root, "worker-probe", PROBE)
    # Ray kills workers when the machine's memory is nearly full, whoever fills it: other tests and
    # programs on a CI machine must not turn into "worker died" here
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                          "temp_dir": ray_dir})
    args = cmd_args.parse_args(["--nowebui", "--data-dir", str(root), "--ray-address", nodes.address])
    ctx = create_context(args)
    pool = distributed.attach(ctx, wait=300, ui_sandbox=sandbox)
    assert [w.state for w in pool.workers()] == ["idle", "idle"], pool.describe()
    single = make_context(root)
    load_extensions(single, run_installers=False)
    single.services.scripts.set_ui_sandbox(sandbox)
    try:
        yield ctx, single, nodes
    finally:
        pool.close()
        import ray
        ray.shutdown()
        nodes.shutdown()
        os.environ.pop("RAY_memory_monitor_refresh_ms", None)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ray_dir, ignore_errors=True)


def _submit_all(ctx, requests: list[GenerationRequest]) -> list:
    """Submit concurrently, in this order of the queue; the results (or exceptions) in order."""
    results: list = [None] * len(requests)

    def go(i):
        try:
            results[i] = generation.submit(ctx, requests[i])
        except Exception as e:  # noqa: BLE001 - checked by the caller
            results[i] = e
    threads = []
    for i in range(len(requests)):
        before = ctx.jobs.queue_length() + len(ctx.jobs.running)
        t = threading.Thread(target=go, args=(i,))
        t.start()
        threads.append(t)
        deadline = time.time() + 10
        while ctx.jobs.queue_length() + len(ctx.jobs.running) <= before and t.is_alive() and time.time() < deadline:
            time.sleep(0.005)
    for t in threads:
        t.join(120)
    return results


def test_eight_jobs_on_two_workers_make_the_single_process_images(cluster):
    ctx, single, _ = cluster
    requests = [_request(ctx, seed=100 + i, prompt=["a red circle", "a blue square"][i % 2], positional=i % 3 == 0)
                for i in range(8)]
    results = _submit_all(ctx, requests)
    worker_pids = {w.info["pid"] for w in ctx.workers.workers()}
    used = set()
    for request, result in zip(requests, results, strict=True):
        assert not isinstance(result, Exception), result
        expected = generation.submit(single, request)
        assert _same_image(result.images[0], expected.images[0])
        assert result.infotext.replace(f"Worker pid: {_pid(result.infotext)}", "") == \
            expected.infotext.replace(f"Worker pid: {os.getpid()}", "")
        used.add(_pid(result.infotext))  # the extension's script ran in the worker
    assert used == worker_pids and os.getpid() not in used


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_killed_worker_s_job_runs_again_on_the_other_with_the_same_image(cluster):
    import httpx

    from tests.live_server import LiveServer

    ctx, single, _ = cluster
    pool = ctx.workers
    request = _request(ctx, seed=-1, delay=0.15, steps=10)
    answers: list[tuple[int, float]] = []
    done = threading.Event()
    result: dict = {}
    with LiveServer(ctx) as url:
        def poll():
            with httpx.Client(timeout=10) as client:
                while not done.is_set():
                    t0 = time.time()
                    answers.append((client.get(f"{url}/sdapi/v1/progress").status_code, time.time() - t0))
                    time.sleep(0.05)
        poller = threading.Thread(target=poll)
        poller.start()
        runner = threading.Thread(target=lambda: result.update(r=generation.submit(ctx, request)))
        runner.start()
        _wait(lambda: ctx.jobs.current is not None and ctx.jobs.current.sampling_step >= 3, 60, "step 3")
        job = ctx.jobs.current
        victim = job.slot
        old_pid = victim.info["pid"]
        os.kill(old_pid, signal.SIGKILL)
        runner.join(120)
        done.set()
        poller.join(10)
    out = result["r"]
    seed = int(out.infotext.split("Seed: ")[1].split(",")[0])
    survivor = next(w for w in pool.workers() if w.id != victim.id)
    assert _pid(out.infotext) == survivor.info["pid"]
    runs = [h for h in pool.history if h["job"] == job.id]
    assert [(h["worker"], h["outcome"]) for h in runs] == [(victim.id, "died"), (survivor.id, "result")]
    expected = generation.submit(single, _request(ctx, seed=seed, steps=10))
    assert _same_image(out.images[0], expected.images[0])
    _wait(lambda: victim.state == "idle", 120, "the killed worker's restart")
    assert victim.info["pid"] != old_pid and victim.restarts == 1
    assert answers and all(code == 200 for code, _ in answers)
    assert max(t for _, t in answers) < 5.0  # never waits on the dead worker (generous for a busy CI machine)


def test_interrupt_stops_the_job_on_its_worker_only(cluster):
    ctx, single, _ = cluster
    requests = [_request(ctx, seed=11, delay=0.25, steps=20), _request(ctx, seed=12, delay=0.1, steps=40)]
    results: dict = {}
    threads = [threading.Thread(target=lambda i=i: results.update({i: generation.submit(ctx, requests[i])}))
               for i in range(2)]
    for t in threads:
        t.start()
    _wait(lambda: len(ctx.jobs.running) == 2 and all(j.sampling_step >= 2 for j in ctx.jobs.running), 60,
          "both jobs sampling")
    a, b = sorted(ctx.jobs.running, key=lambda j: j.id)
    assert a.slot is not b.slot
    pressed_at = a.sampling_step
    assert ctx.jobs.interrupt(job_id=a.id)
    for t in threads:
        t.join(120)
    run_a = next(h for h in ctx.workers.history if h["job"] == a.id)
    arrived = run_a["controls"]["interrupt"]
    # pressed_at is the front end's copy of the step, up to one poll (0.1 s) behind the worker's
    assert arrived - pressed_at <= 2        # delivered at once
    assert run_a["step"] - arrived <= 1     # and the sampler stopped at its next step
    assert results[0].interrupted and run_a["step"] < 20
    assert not results[1].interrupted and not b.interrupted
    assert _same_image(results[1].images[0], generation.submit(single, requests[1]).images[0])


def test_alternating_checkpoints_load_each_once(cluster):
    ctx, _, _ = cluster
    pool = ctx.workers
    ctx.models.unload()
    import ray

    _wait(lambda: all(ray.get(w.actor.status.remote())["loaded"] == [] for w in pool.workers()), 30, "unload")
    before = [dict(ray.get(w.actor.status.remote())["loads"]) for w in pool.workers()]
    requests = [_request(ctx, seed=i, ckpt=("tiny-a", "tiny-b")[i % 2], delay=0.02) for i in range(8)]
    results = _submit_all(ctx, requests)
    assert all(not isinstance(r, Exception) for r in results), results
    after = [dict(ray.get(w.actor.status.remote())["loads"]) for w in pool.workers()]
    loads: dict[str, int] = {}
    for b, a in zip(before, after, strict=True):
        for title, n in a.items():
            loads[title] = loads.get(title, 0) + n - b.get(title, 0)
    assert {k: v for k, v in loads.items() if v} == {_ckpt(ctx, "tiny-a"): 1, _ckpt(ctx, "tiny-b"): 1}


def test_workers_status_in_memory_api_and_ui_panel(cluster):
    from starlette.testclient import TestClient

    from webui.server import build_app
    from webui.ui.workers_panel import workers_html

    ctx, _, _ = cluster
    with TestClient(build_app(ctx)) as client:
        # the checkpoint chosen through /options is the one jobs without an override run on
        chosen = _ckpt(ctx, "tiny-b")
        assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-b"}).status_code == 200
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == chosen
        made = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64})
        assert made.status_code == 200 and "Model: tiny-b" in made.json()["info"]
        body = client.get("/sdapi/v1/memory").json()
    workers = body["workers"]
    assert [w["id"] for w in workers] == [w.id for w in ctx.workers.workers()]
    assert all(w["healthy"] and w["device"] == "cpu" and w["pid"] for w in workers)
    assert any(w["loaded_models"] for w in workers)
    panel = workers_html(ctx)
    assert panel.count("<tr><td>") == len(workers) and panel.count("<td>idle</td>") == len(workers)
    assert all(model in panel for w in workers for model in w["loaded_models"])


def test_a_job_whose_worker_dies_twice_returns_the_error(cluster):
    ctx, _, _ = cluster
    pool = ctx.workers
    result: dict = {}

    def go():
        try:
            generation.submit(ctx, _request(ctx, seed=5, delay=0.15, steps=10))
        except Exception as e:  # noqa: BLE001 - checked below
            result["error"] = e
    runner = threading.Thread(target=go)
    runner.start()
    killed = []
    for _ in range(2):
        _wait(lambda: ctx.jobs.current is not None and ctx.jobs.current.slot not in killed
              and ctx.jobs.current.sampling_step >= 3, 120, "step 3")
        worker = ctx.jobs.current.slot
        killed.append(worker)
        os.kill(worker.info["pid"], signal.SIGKILL)
    runner.join(120)
    error = result["error"]
    assert isinstance(error, generation.RequestError) and error.status == 500
    assert "failed twice" in str(error)
    _wait(lambda: all(w.state == "idle" for w in pool.workers()), 180, "both workers back")
    assert {w.id for w in killed} == {w.id for w in pool.workers()}


def test_a_machine_that_joins_gets_a_worker_and_one_that_leaves_is_dropped(cluster):
    ctx, _, nodes = cluster
    pool = ctx.workers
    before = {w.id for w in pool.workers()}
    node = nodes.add_node(num_cpus=1)
    try:
        _wait(lambda: len(pool.workers()) == 3 and all(w.state == "idle" for w in pool.workers()), 180,
              "a worker on the new machine")
        new = next(w for w in pool.workers() if w.id not in before)
        assert new.info["node"] == node.node_id
        results = _submit_all(ctx, [_request(ctx, seed=s, delay=0.1) for s in range(3)])
        assert {_pid(r.infotext) for r in results} == {w.info["pid"] for w in pool.workers()}  # all used
    finally:
        nodes.remove_node(node)
    _wait(lambda: {w.id for w in pool.workers()} == before, 60, "the worker of the machine that left dropped")
    assert all(w.state == "idle" for w in pool.workers())
