"""One generation at a time per device: a FIFO job queue shared by the web UI and the HTTP API.

A Job is the handle a running pipeline reports progress to and checks for interrupt/skip every step;
the front ends read `JobQueue.progress()` (A1111's /progress shape) and call interrupt()/skip().
The engine never blocks on a front end: callers wait in `run`, the pipeline runs in their thread.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

T = TypeVar("T")


@dataclass
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
    _interrupted: threading.Event = field(default_factory=threading.Event, repr=False)
    _skipped: threading.Event = field(default_factory=threading.Event, repr=False)

    # -- control (called from any thread) --------------------------------------------------------
    def interrupt(self) -> None:
        self._interrupted.set()

    def skip(self) -> None:
        self._skipped.set()

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


class JobQueue:
    """FIFO: jobs run in the order they asked, one at a time; each caller sees its place."""

    def __init__(self):
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._ids = itertools.count(1)
        self.current: Job | None = None
        self.last: Job | None = None

    def new_job(self, name: str) -> Job:
        return Job(name=name, id=next(self._ids))

    def position(self, job: Job) -> int:
        """0 = running (or done); n = n jobs ahead of this one."""
        with self._cond:
            if job not in self._waiting:
                return 0
            ahead = list(self._waiting).index(job)
            return ahead + (1 if self.current is not None else 0)

    def run(self, job: Job, fn: Callable[[Job], T], on_wait: Callable[[int], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> T:
        """Wait for the job's turn, then run fn(job) in this thread.

        on_wait(position) is called while waiting; cancelled() returning True while waiting (the
        browser tab was closed) withdraws the job without running it (raises JobCancelled).
        """
        with self._cond:
            self._waiting.append(job)
            while self.current is not None or self._waiting[0] is not job:
                if cancelled is not None and cancelled():
                    self._waiting.remove(job)
                    self._cond.notify_all()
                    raise JobCancelled(f"job {job.name!r} was withdrawn before it started")
                if on_wait is not None:
                    on_wait(self.position(job))
                self._cond.wait(timeout=0.5)
            self._waiting.popleft()
            self.current = job
        job.started = time.time()
        job.job_timestamp = time.strftime("%Y%m%d%H%M%S")
        try:
            return fn(job)
        finally:
            with self._cond:
                self.current = None
                self.last = job
                self._cond.notify_all()

    def interrupt(self) -> bool:
        job = self.current
        if job is not None:
            job.interrupt()
        return job is not None

    def skip(self) -> bool:
        job = self.current
        if job is not None:
            job.skip()
        return job is not None

    def queue_length(self) -> int:
        with self._cond:
            return len(self._waiting)

    def progress(self) -> dict:
        """A1111's /sdapi/v1/progress shape (without the encoded image, which front ends add)."""
        job = self.current
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
