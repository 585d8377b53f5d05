"""Joining or starting the Ray cluster, and how many workers it has room for.

- `--workers N` alone: a Ray instance on this machine (started here, stopped with the app) with N
  workers: one per GPU when the machine has GPUs (at most their number), else N CPU processes
  of `--worker-threads` torch threads each.
- `--ray-address ADDR`: join a running cluster (`ray start --head` on one machine, `ray start
  --address=ADDR` on each GPU machine, from this project's checkout and venv, at the same path):
  one worker per GPU in the cluster (per `--worker-threads` CPUs on a cluster without GPUs), at most
  N with `--workers N`. Machines that join or leave change that number while the app runs.
Each worker runs this checkout's code (PYTHONPATH) with the front end's flags, so on other machines
the checkout, its venv, the models and the data dir must be at the same paths (a shared folder).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("sdwebui.workers")
ROOT = Path(__file__).resolve().parents[2]


class ClusterError(RuntimeError):
    """The cluster cannot be used; the message says what to do."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("Ray is not installed: start through launch.py (it installs requirements-ray.txt "
                           "when --workers or --ray-address is given), or run `pip install --no-deps "
                           "-r requirements-ray.txt` in the venv") from None
    return ray


def connect(args, temp_dir: str | None = None):
    """ray.init for these flags (nothing when this process is connected already); returns ray."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    kwargs = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING}
    try:
        if args.ray_address:
            ray.init(address=args.ray_address, **kwargs)
        else:
            # Ray starts its workers at niceness 15; ours do the app's work, at the app's own priority
            os.environ.setdefault("RAY_worker_niceness", "0")
            gpus = _local_gpus(args)
            cpus = None if gpus else max(1, int(args.workers)) * worker_threads(args)
            ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, _temp_dir=temp_dir, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {args.ray_address}" if args.ray_address else "a local Ray instance"
        raise ClusterError(f"could not start or join {where}: {e}") from None
    return ray


def _local_gpus(args) -> int:
    if "all" in (args.use_cpu or []) or "sd" in (args.use_cpu or []):
        return 0
    import torch
    return torch.cuda.device_count()


def worker_threads(args) -> int:
    return max(1, int(getattr(args, "worker_threads", None) or 1))


def use_gpus(args, ray) -> bool:
    if "all" in (args.use_cpu or []) or "sd" in (args.use_cpu or []):
        return False
    return ray.cluster_resources().get("GPU", 0) >= 1


def desired_workers(args, ray) -> int:
    """How many workers the cluster has room for now (see the module docstring)."""
    resources = ray.cluster_resources()
    if use_gpus(args, ray):
        room = int(resources.get("GPU", 0))
    else:
        room = int(resources.get("CPU", 0)) // worker_threads(args)
    return min(room, int(args.workers)) if args.workers else room


def actor_options(args, ray) -> dict:
    """Resources of one worker: a GPU, or `--worker-threads` CPUs. Ray restarts a worker whose
    process died (as often as needed); calls in flight then fail and the pool re-runs the job."""
    threads = worker_threads(args)
    resources = {"num_gpus": 1, "num_cpus": 1} if use_gpus(args, ray) else {"num_cpus": threads}
    from modules import process_env

    # the launch environment (huge pages, glibc's malloc thresholds) also on machines where `ray start`
    # ran without it; values set here win, as they do for this process
    env = {**{k: os.environ.get(k, v) for k, v in process_env.DEFAULTS.items()},
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return {**resources, "max_restarts": -1, "max_task_retries": 0, "max_concurrency": 4,
            "runtime_env": {"env_vars": env}}


def make_pool(ctx, temp_dir: str | None = None, wait: float | None = None, ui_sandbox=None, ui_environment=None):
    """Connect, and start the worker pool on ctx (its scheduler drives ctx.jobs)."""
    from modules.distributed.pool import WorkerPool
    from modules.distributed.worker import GenerationWorker

    args = ctx.args
    ray = connect(args, temp_dir)
    actor_class = ray.remote(GenerationWorker)
    pool = WorkerPool(ctx, ray, actor_class, desired=lambda: desired_workers(args, ray),
                      actor_options=actor_options(args, ray), threads=worker_threads(args),
                      ui_sandbox=ui_sandbox, ui_environment=ui_environment)
    return pool.start(wait=wait)
