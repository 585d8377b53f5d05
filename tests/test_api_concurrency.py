"""Many clients at once against a real server: 8 threads x 5 txt2img requests with fixed seeds all
succeed, each image equals the one the same request gives alone (no cross-talk between jobs), and
/progress keeps answering while the queue is full. The test bounds its own time."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import requests

from tests.api_support import b64_image, make_context, make_data_dir
from tests.live_server import LiveServer

THREADS, PER_THREAD = 8, 5
BUDGET_S = 240
pytestmark = pytest.mark.slow  # about a minute on a shared 2-core machine (80 generations)  # the whole test; each request has its own timeout inside it


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    ctx = make_context(make_data_dir(tmp_path_factory.mktemp("concurrency-data")), "--nowebui")
    ctx.opts.set("sd_model_checkpoint", "tiny-a.safetensors")
    with LiveServer(ctx) as url:
        yield url + "/sdapi/v1"


def request_for(thread: int, i: int) -> dict:
    # different prompts, seeds, samplers and sizes, so any leak between jobs shows in the pixels
    return {"prompt": f"thread {thread} image {i}", "seed": 1000 * thread + i, "steps": 3,
            "sampler_name": ("Euler a", "DPM++ 2M", "Euler", "DDIM")[(thread + i) % 4],
            "width": 64, "height": 48 if i % 2 else 64, "cfg_scale": 4 + thread % 3,
            "override_settings": {"CLIP_stop_at_last_layers": 1 + thread % 2}}


def pixels(response: requests.Response) -> np.ndarray:
    return np.asarray(b64_image(response.json()["images"][0]).convert("RGB"))


def test_parallel_clients_get_the_images_they_would_get_alone(api):
    deadline = time.time() + BUDGET_S
    results: dict[tuple[int, int], requests.Response] = {}
    errors: list[str] = []
    stop_polling = threading.Event()
    progress_latencies: list[float] = []
    progress_jobs: list[str] = []

    def client(thread: int):
        session = requests.Session()
        for i in range(PER_THREAD):
            try:
                results[thread, i] = session.post(f"{api}/txt2img", json=request_for(thread, i),
                                                  timeout=max(1.0, deadline - time.time()))
            except requests.RequestException as e:
                errors.append(f"{thread}/{i}: {e}")

    def poll_progress():
        while not stop_polling.is_set() and time.time() < deadline:
            t0 = time.time()
            try:
                body = requests.get(f"{api}/progress", params={"skip_current_image": True}, timeout=10).json()
            except requests.RequestException as e:
                errors.append(f"progress: {e}")
                return
            progress_latencies.append(time.time() - t0)
            progress_jobs.append(body["state"]["job"])
            time.sleep(0.05)

    poller = threading.Thread(target=poll_progress)
    poller.start()
    clients = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(max(0.0, deadline - time.time()))
    stop_polling.set()
    poller.join(15)
    assert not any(t.is_alive() for t in clients), "clients still running at the deadline"
    assert errors == []
    assert len(results) == THREADS * PER_THREAD
    for key, response in results.items():
        assert response.status_code == 200, (key, response.text)
        info = json.loads(response.json()["info"])
        assert info["seed"] == request_for(*key)["seed"] and info["prompt"] == request_for(*key)["prompt"]
        assert info["clip_skip"] == request_for(*key)["override_settings"]["CLIP_stop_at_last_layers"]

    # progress answered all along, quickly, and saw the jobs running
    assert "txt2img" in progress_jobs and len(progress_latencies) >= 5
    assert max(progress_latencies) < 5, max(progress_latencies)

    # each request alone, one after another, gives the same pixels
    for thread in range(THREADS):
        for i in range(PER_THREAD):
            alone = requests.post(f"{api}/txt2img", json=request_for(thread, i),
                                  timeout=max(1.0, deadline - time.time()))
            assert alone.status_code == 200
            assert np.array_equal(pixels(alone), pixels(results[thread, i])), (thread, i)
    options = requests.get(f"{api}/options", timeout=10).json()
    assert options["CLIP_stop_at_last_layers"] == 1  # every override was restored
