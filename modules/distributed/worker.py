"""A worker: one process with its own application context (model manager, prompt services,
extensions - built by modules.startup as the server builds its own) that runs the front end's jobs
through the engine's entry point, `generation.run(ctx, request, job)`.

The pool (pool.py) makes it a Ray actor with a few threads: `run` executes one job at a time while
`progress`, `control` and `status` answer from the other threads, so the front end can mirror the
job's progress and live preview and deliver Interrupt / Skip between two sampling steps.

What a job brings besides its request (`JobSpec`): the front end's settings at dispatch time (the
worker never reads or writes config.json after start, so a setting changed in the UI applies to the
next job on every worker), the checkpoint it runs on (loaded here on demand; the manager keeps
`sd_checkpoints_limit` of them) and Interrupt / Skip pressed before it arrived.
Outcomes are plain data (`{"result": ...}`, `{"request_error": ...}`, `{"failed": ...}`): exceptions
with their own constructors do not always survive pickling, and the front end decides about retries.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("sdwebui.worker")


@dataclass
class JobSpec:
    id: int                      # the front end's job id (controls name it)
    name: str                    # task, for shared.state.job
    checkpoint: str | None       # catalog title the job runs on (None: extras, no model needed)
    settings: dict[str, Any] = field(default_factory=dict)  # the front end's Options.data
    interrupted: bool = False
    skipped: bool = False


def is_device_lost(e: BaseException) -> bool:
    """A device error after which this process's device context is unusable (CUDA's 'illegal memory
    access', 'device-side assert', ECC or lost-device errors): the worker must start afresh."""
    import torch

    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(e, accelerator_error):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and any(s in text for s in (
        "CUDA error", "CUBLAS_STATUS", "cuDNN error", "device-side assert", "unspecified launch failure",
        "HIP error", "device lost"))


class GenerationWorker:
    """One device's worker (see the module docstring). `args` are the front end's parsed flags;
    `ui_sandbox` the front end's off-page context for building script controls (webui.ui.scripts_ui
    .sandbox), so scripts lay out their arguments here exactly as there, and `ui_environment` its
    context for extensions' UI code (webui.ui.gradio3_compat.environment)."""

    def __init__(self, args, worker_id: int, threads: int = 1, ui_sandbox=None, ui_environment=None):
        import torch

        from modules import startup
        from modules.context import create_context

        torch.set_num_threads(max(1, int(threads)))
        self.worker_id, self.threads = worker_id, threads
        args.device_id = None  # Ray gives this process its GPU as device 0
        self.ctx = create_context(args)
        self.ctx.opts.path = None  # the front end owns config.json; jobs bring its settings
        startup.attach_engine(self.ctx, preload=False, extension_ui_environment=ui_environment)
        if ui_sandbox is not None and self.ctx.services.scripts is not None:
            self.ctx.services.scripts.set_ui_sandbox(ui_sandbox)
        self.started = time.time()
        self.loads: Counter[str] = Counter()     # checkpoint title -> times read from disk here
        self.load_seconds: dict[str, float] = {}
        self.jobs_done = 0
        self._run_lock = threading.Lock()
        self._lock = threading.Lock()
        self._job = None
        self._early: dict[int, set[str]] = {}    # controls that came before their job
        self._arrived: dict[str, int] = {}       # control -> the running job's step when it came
        self._preview: tuple[int, Any] = (0, None)  # (sequence number, image) of the running job's preview

    # -- what the pool asks ----------------------------------------------------------------------
    def ready(self) -> dict:
        """Who and where this worker is (asked after every start and restart)."""
        device = self.ctx.models.device
        name = str(device)
        if device.type == "cuda":
            import torch
            name = f"{device} ({torch.cuda.get_device_name(device)})"
        import ray
        return {"worker": self.worker_id, "pid": os.getpid(), "host": socket.gethostname(), "device": name,
                "node": ray.get_runtime_context().get_node_id(), "threads": self.threads, "started": self.started}

    def status(self) -> dict:
        job = self._job
        return {**self.ready(), "loaded": self.loaded(), "loads": dict(self.loads), "jobs_done": self.jobs_done,
                "job": None if job is None else {"id": job.id, "name": job.name, "step": job.sampling_step,
                                                 "steps": job.sampling_steps},
                "memory": self._memory()}

    def loaded(self) -> list[str]:
        """The checkpoints held, most recently used last."""
        return [loaded.info.title for loaded in self.ctx.models.loaded()]

    def run(self, spec: JobSpec, request) -> dict:
        """Run one job; returns {"result": GenerationResult, ...} or {"request_error": (message,
        field, status)} or {"failed": text, "device_lost": bool}."""
        from modules import generation
        from modules.errors import RequestError
        from modules.jobs import Job

        with self._run_lock:
            t0, cpu0 = time.perf_counter(), time.process_time()
            job = Job(name=spec.name, id=spec.id)
            with self._lock:
                early = self._early.pop(spec.id, set())
                self._job, self._preview, self._arrived = job, (0, None), {w: 0 for w in early}
            if spec.interrupted or "interrupt" in early:
                job.interrupt()
            if spec.skipped or "skip" in early:
                job.skip()
            try:
                self._use_settings(spec)
                result = self.ctx.jobs.run(job, lambda j: generation.run(self.ctx, request, j))
                return {"result": result, "loaded": self.loaded(), "step": job.sampling_step,
                        "controls": dict(self._arrived), "seconds": time.perf_counter() - t0,
                        "cpu_seconds": time.process_time() - cpu0}
            except RequestError as e:
                return {"request_error": (e.message, e.field, e.status), "loaded": self.loaded()}
            except Exception as e:  # noqa: BLE001 - reported to the front end, which retries elsewhere
                log.exception("job %s failed on worker %s", spec.id, self.worker_id)
                return {"failed": f"{type(e).__name__}: {e}", "device_lost": is_device_lost(e),
                        "traceback": traceback.format_exc(), "loaded": self.loaded()}
            finally:
                with self._lock:
                    self._job = None
                self.jobs_done += 1

    def progress(self, job_id: int, preview_seen: int = 0) -> dict | None:
        """The running job's progress; its live preview only when newer than `preview_seen`."""
        job = self._job
        if job is None or job.id != job_id:
            return None
        with self._lock:
            seq, image = self._preview
            if job.current_image is not None and job.current_image is not image:
                seq, image = seq + 1, job.current_image
                self._preview = (seq, image)
        return {"job_no": job.job_no, "job_count": job.job_count, "sampling_step": job.sampling_step,
                "sampling_steps": job.sampling_steps, "textinfo": job.textinfo, "preview_seq": seq,
                "preview": image if seq != preview_seen else None}

    def control(self, job_id: int, what: str) -> bool:
        """Interrupt or skip job `job_id` (kept for it when it has not started here yet)."""
        with self._lock:
            job = self._job
            if job is None or job.id != job_id:
                self._early.setdefault(job_id, set()).add(what)
                return False
            self._arrived.setdefault(what, job.sampling_step)
        if what == "interrupt":
            job.interrupt()
        else:
            job.skip()
        return True

    def refresh(self) -> None:
        self.ctx.models.refresh()

    def unload(self) -> None:
        with self._run_lock:
            self.ctx.models.unload()

    # -- internals ---------------------------------------------------------------------------------
    def _use_settings(self, spec: JobSpec) -> None:
        """The front end's settings for this job, then its checkpoint (timed when read from disk)."""
        ctx = self.ctx
        ctx.opts.data = dict(spec.settings)
        models = ctx.models
        models.max_loaded = max(1, int(ctx.opts.sd_checkpoints_limit))
        if models.vae_choice != ctx.opts.sd_vae:
            models.set_vae(ctx.opts.sd_vae)
        if spec.checkpoint:
            if models.catalog.get(spec.checkpoint) is None:  # a file added since this worker started
                models.refresh()
            before = set(self.loaded())
            t0 = time.perf_counter()
            loaded = models.load(spec.checkpoint)
            if loaded.info.title not in before:
                self.loads[loaded.info.title] += 1
                self.load_seconds[loaded.info.title] = time.perf_counter() - t0

    def _memory(self) -> dict:
        out: dict[str, Any] = {}
        try:
            import psutil
            out["rss"] = psutil.Process(os.getpid()).memory_info().rss
        except Exception:  # noqa: BLE001 - a sandbox may hide /proc
            pass
        device = self.ctx.models.device
        if device.type == "cuda":
            import torch
            free, total = torch.cuda.mem_get_info(device)
            out["cuda"] = {"free": free, "total": total, "allocated": torch.cuda.memory_allocated(device)}
        return out
