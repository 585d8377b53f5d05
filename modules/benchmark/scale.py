"""Throughput on Ray workers, and what a job pays for running on one.

    python -m modules.benchmark scale [--workers 1,2] [--jobs 16] [--steps 20] [--threads 1]
                                      [--ray-address ADDR] [--checkpoint TITLE] [--size PX]

1. single process: the app as it runs without workers (generation.submit in this process, one torch
   thread): `--jobs` txt2img jobs one after another -> seconds per job;
2. for each worker count N: a pool of N workers (`--threads` torch threads each) on a local Ray
   instance (or the cluster at --ray-address), every worker warmed up (checkpoint loaded), then
   `--jobs` jobs submitted at once -> images/min; with N = 1 also the same jobs one after another ->
   seconds per job, whose difference to 1. (measured before and after the workers) is the overhead of a job on a worker (dispatch, settings,
   pickling the request and the image, progress mirroring; target <= 50 ms).
Jobs: the demo model (or --checkpoint), "a red circle", DPM++ 2M, 20 steps, native size, seeds 1..jobs.
The load average is printed before and after: on a shared machine other work skews the figures, so
each worker's CPU time per job and the share of a core it got (CPU / wall time in its run) are
printed too: with N workers on N free cores the share stays near 1 and the throughput scales by N.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

PROMPTS = ("a red circle", "a blue square", "a green triangle")


def _requests(title: str, size: int, steps: int, jobs: int):
    from modules.generation import GenerationRequest

    return [GenerationRequest("txt2img", {"prompt": PROMPTS[i % 3], "steps": steps, "width": size, "height": size,
                                          "seed": i + 1, "sampler_name": "DPM++ 2M", "do_not_save_samples": True},
                              override_settings={"sd_model_checkpoint": title}) for i in range(jobs)]


def _sequential(ctx, requests, cpu: list | None = None) -> float:
    """Seconds per job one after another; appends this process's CPU seconds per job to `cpu`."""
    from modules import generation

    t0, c0 = time.perf_counter(), time.process_time()
    for r in requests:
        generation.submit(ctx, r)
    if cpu is not None:
        cpu.append((time.process_time() - c0) / len(requests))
    return (time.perf_counter() - t0) / len(requests)


def _sequential_on_worker(ctx, requests) -> tuple[float, float]:
    """Seconds per job one after another as the front end sees them, and inside the worker's run
    (from the pool's history): their difference is what running on a worker adds to a job."""
    from modules import generation

    total = inside = 0.0
    for r in requests:
        t0 = time.perf_counter()
        generation.submit(ctx, r)
        total += time.perf_counter() - t0
        inside += ctx.workers.history[-1]["seconds"]
    return total / len(requests), inside / len(requests)


def _concurrent(ctx, requests) -> float:
    from modules import generation

    errors: list = []

    def go(r):
        try:
            generation.submit(ctx, r)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=go, args=(r,)) for r in requests]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} job(s) failed: {errors[0]}")
    return time.perf_counter() - t0


def _args(data_dir: str, extra: list[str]):
    from modules import cmd_args

    return cmd_args.parse_args(["--nowebui", "--data-dir", data_dir, "--disable-all-extensions", *extra])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m modules.benchmark scale", description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each worker and of the baseline")
    parser.add_argument("--ray-address", default=None, help="measure on this running cluster instead")
    parser.add_argument("--checkpoint", default=None, help="checkpoint title (default: the shipped demo)")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the default checkpoint's own)")
    opts = parser.parse_args(argv)
    counts = [int(n) for n in opts.workers.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    from modules import process_env

    process_env.apply()  # as launch.py does (before torch is imported), for both sides
    process_env.tune_malloc()
    import torch

    from modules import distributed, startup
    from modules.context import create_context
    from modules.distributed import cluster

    torch.set_num_threads(opts.threads)
    data_dir = tempfile.mkdtemp(prefix="sd-scale-")
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    try:
        single = create_context(_args(data_dir, []))
        startup.attach_engine(single, preload=False, load_extensions=False)
        title = opts.checkpoint or startup.default_checkpoint(single).title
        size = opts.size or startup.native_size(single)
        requests = _requests(title, size, opts.steps, opts.jobs)
        _sequential(single, requests[:1])  # loads the checkpoint
        cpu: list[float] = []
        base = _sequential(single, requests, cpu)
        print(f"{title}, {size}x{size}, DPM++ 2M, {opts.steps} steps, {opts.jobs} jobs, {opts.threads} thread(s) each")
        print(f"single process: {base * 1000:.0f} ms/job = {60 / base:.1f} images/min, {cpu[0] * 1000:.0f} ms CPU "
              "per job", flush=True)
        address = ["--ray-address", opts.ray_address] if opts.ray_address else []
        cluster.connect(_args(data_dir, ["--workers", str(max(counts)), "--worker-threads", str(opts.threads),
                                         *address]), temp_dir=None if opts.ray_address else ray_dir)
        rates = {}
        for n in counts:
            ctx = create_context(_args(data_dir, ["--workers", str(n), "--worker-threads", str(opts.threads),
                                                  *address]))
            pool = distributed.attach(ctx, wait=600)
            try:
                _concurrent(ctx, requests[:n])  # each worker loads the checkpoint
                took = _concurrent(ctx, requests)
                rates[n] = 60 * len(requests) / took
                runs = list(ctx.workers.history)[-len(requests):]
                cpu_job = sum(r["cpu_seconds"] for r in runs) / len(runs)
                share = sum(r["cpu_seconds"] for r in runs) / sum(r["seconds"] for r in runs)
                line = (f"{n} worker(s): {rates[n]:.1f} images/min ({took:.2f} s for {len(requests)} jobs; "
                        f"{cpu_job * 1000:.0f} ms CPU per job, each worker had {share:.2f} of a core)")
                if n == 1:
                    per_job, inside = _sequential_on_worker(ctx, requests)
                    line += (f"; one after another {per_job * 1000:.0f} ms/job ({(per_job - base) * 1000:+.0f} ms "
                             f"against the single process), of which {(per_job - inside) * 1000:.1f} ms outside the "
                             "worker's run (dispatch, transfer, mirroring)")
                if 1 in rates and n > 1:
                    line += f"; {rates[n] / rates[1]:.2f}x one worker"
                print(line, flush=True)
            finally:
                pool.close()
        again = _sequential(single, requests, cpu)  # brackets the worker runs: the machine's speed drifts
        print(f"single process again: {again * 1000:.0f} ms/job, {cpu[1] * 1000:.0f} ms CPU per job")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(ray_dir, ignore_errors=True)
    return 0
