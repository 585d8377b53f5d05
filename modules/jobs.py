"""The job queue shared by the web UI and the HTTP API: FIFO, `slots` jobs at once (one per device).

A Job is the handle a running pipeline reports progress to and checks for interrupt/skip every step;
the front ends read `JobQueue.progress()` (A1111's /progress shape) and call interrupt()/skip().
The engine never blocks on a front end: callers wait in `run`, the pipeline runs in their thread.

One process serves one device: one slot, strict FIFO. With workers (modules.distributed) the queue
runs one job per worker at once and a scheduler decides which waiting job starts on which worker
(`scheduler(waiting, running) -> [(job, slot)]`, called under the queue's lock); `wake()` asks it again
when workers change. A job's `slot` is what the scheduler gave it (its worker), None in one process.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

T = TypeVar("T")


@dataclass(eq=False)  # a job is itself: compared and hashed by identity
class Job:
    name: str
    id: int = 0
    created: float = field(default_factory=time.time)
    started: float | None = None
    job_timestamp: str = ""
    job_count: int = 1          # images (or batches) the job will make
    job_no: int = 0             # which one is being made
    sampling_step: int = 0
    sampling_steps: int = 0
    textinfo: str | None = None
    current_image: Any = None   # PIL image of the live preview, when enabled
    slot: Any = None            # where it runs: the scheduler's choice (a worker), None in one process
    owner: str | None = None    # who asked (the UI's session), so its Interrupt stops its own job
    on_control: Callable[[str], None] | None = field(default=None, repr=False)  # "interrupt"/"skip" forwarded
    _interrupted: threading.Event = field(default_factory=threading.Event, repr=False)
    _skipped: threading.Event = field(default_factory=threading.Event, repr=False)

    # -- control (called from any thread) --------------------------------------------------------
    def interrupt(self) -> None:
        self._interrupted.set()
        self._forward("interrupt")

    def skip(self) -> None:
        self._skipped.set()
        self._forward("skip")

    def _forward(self, what: str) -> None:
        """To the process that runs the job (a worker), at once: it checks its own flags every step."""
        if self.on_control is not None:
            self.on_control(what)

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    @property
    def skipped(self) -> bool:
        return self._skipped.is_set()

    # -- reporting (called by the pipeline) ------------------------------------------------------
    def begin_image(self, job_no: int, steps: int) -> None:
        """A new image (or batch) starts: skip applies to one image only."""
        self._skipped.clear()
        self.job_no, self.sampling_step, self.sampling_steps = job_no, 0, steps

    def set_step(self, step: int, preview: Any = None) -> None:
        self.sampling_step = step
        if preview is not None:
            self.current_image = preview

    def progress_fraction(self) -> float:
        if self.job_count <= 0:
            return 0.0
        per_image = self.sampling_step / self.sampling_steps if self.sampling_steps else 0.0
        return min(1.0, (self.job_no + per_image) / self.job_count)

    def eta_seconds(self) -> float | None:
        done = self.progress_fraction()
        if self.started is None or done <= 0:
            return None
        elapsed = time.time() - self.started
        return elapsed / done - elapsed


Scheduler = Callable[[list[Job], list[Job]], list[tuple[Job, Any]]]


class JobQueue:
    """FIFO: jobs start in the order they asked, `slots` at a time; each caller sees its place."""

    def __init__(self, slots: int = 1, scheduler: Scheduler | None = None):
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._ids = itertools.count(1)
        self.slots = slots
        self.scheduler = scheduler
        self.running: list[Job] = []  # oldest first
        self.last: Job | None = None

    @property
    def current(self) -> Job | None:
        """The oldest running job: the one /progress reports (the only one in one process)."""
        return next(iter(list(self.running)), None)

    def new_job(self, name: str) -> Job:
        return Job(name=name, id=next(self._ids))

    def find(self, job_id: int) -> Job | None:
        with self._cond:
            return next((j for j in [*self.running, *self._waiting] if j.id == job_id), None)

    def position(self, job: Job) -> int:
        """0 = running (or done); n = this job is the n-th in line (running jobs count as one)."""
        with self._cond:
            if job not in self._waiting:
                return 0
            ahead = list(self._waiting).index(job)
            return ahead + (1 if self.running else 0)

    def _dispatch(self) -> None:
        """Start what may start now (the caller holds the lock)."""
        if self.scheduler is not None:
            chosen = self.scheduler(list(self._waiting), list(self.running))
        else:
            chosen = [(job, None) for job in list(self._waiting)[: max(0, self.slots - len(self.running))]]
        for job, slot in chosen:
            self._waiting.remove(job)
            job.slot = slot
            self.running.append(job)
        if chosen:
            self._cond.notify_all()

    def wake(self) -> None:
        """Something the scheduler looks at changed (a worker joined, became idle or died)."""
        with self._cond:
            self._dispatch()
            self._cond.notify_all()

    def run(self, job: Job, fn: Callable[[Job], T], on_wait: Callable[[int], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> T:
        """Wait for the job's turn, then run fn(job) in this thread.

        on_wait(position) is called while waiting; cancelled() returning True while waiting (the
        browser tab was closed) withdraws the job without running it (raises JobCancelled).
        """
        with self._cond:
            self._waiting.append(job)
            self._dispatch()
            while job not in self.running:
                if cancelled is not None and cancelled():
                    self._waiting.remove(job)
                    self._dispatch()
                    raise JobCancelled(f"job {job.name!r} was withdrawn before it started")
                if on_wait is not None:
                    on_wait(self.position(job))
                self._cond.wait(timeout=0.5)
                if job not in self.running:
                    self._dispatch()
        job.started = time.time()
        job.job_timestamp = time.strftime("%Y%m%d%H%M%S")
        try:
            return fn(job)
        finally:
            with self._cond:
                self.running.remove(job)
                self.last = job
                self._dispatch()
                self._cond.notify_all()

    def _target(self, job_id: int | None, owner: str | None) -> list[Job]:
        """The job(s) a control is meant for: by id; else the owner's running jobs; else the oldest."""
        running = list(self.running)
        if job_id is not None:
            return [j for j in running if j.id == job_id]
        own = [j for j in running if owner is not None and j.owner == owner]
        return own or running[:1]

    def interrupt(self, job_id: int | None = None, owner: str | None = None) -> bool:
        jobs = self._target(job_id, owner)
        for job in jobs:
            job.interrupt()
        return bool(jobs)

    def skip(self, job_id: int | None = None, owner: str | None = None) -> bool:
        jobs = self._target(job_id, owner)
        for job in jobs:
            job.skip()
        return bool(jobs)

    def queue_length(self) -> int:
        with self._cond:
            return len(self._waiting)

    def progress(self, job: Job | None = None) -> dict:
        """A1111's /sdapi/v1/progress shape (without the encoded image, which front ends add) of `job`,
        by default the oldest running one."""
        job = job or self.current
        if job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "textinfo": None, "current_image": None,
                    "state": {"skipped": False, "interrupted": False, "job": "", "job_count": 0,
                              "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}}
        return {
            "progress": job.progress_fraction(),
            "eta_relative": job.eta_seconds() or 0.0,
            "textinfo": job.textinfo,
            "current_image": job.current_image,
            "state": {"skipped": job.skipped, "interrupted": job.interrupted, "job": job.name,
                      "job_count": job.job_count, "job_timestamp": job.job_timestamp, "job_no": job.job_no,
                      "sampling_step": job.sampling_step, "sampling_steps": job.sampling_steps},
        }


class JobCancelled(Exception):
    """The job was withdrawn from the queue before it started (its browser tab closed)."""


class JobInterrupted(Exception):
    """Interrupt reached a part of a job that has nothing to show yet (e.g. prompt encoding)."""
