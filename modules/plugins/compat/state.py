"""`shared.state` for extensions: the job running now (modules.jobs.Job), by A1111's names.

Reads give neutral values when no job runs. Writes an extension makes while its script runs
(`state.job_count = n`, `state.textinfo = "..."`, `state.nextjob()`) go to the running job, so the
progress bar and the API's /progress follow them; with no job they are ignored. begin()/end() are
no-ops: the job queue starts and ends jobs.
"""
from __future__ import annotations

from typing import Any

from modules.script_callbacks import current_scope

# A1111 name -> (Job attribute or None when this web UI has no such value, value when idle)
FIELDS = {
    "interrupted": ("interrupted", False), "skipped": ("skipped", False), "job": ("name", ""),
    "job_count": ("job_count", 0), "job_no": ("job_no", 0), "sampling_step": ("sampling_step", 0),
    "sampling_steps": ("sampling_steps", 0), "textinfo": ("textinfo", None), "job_timestamp": ("job_timestamp", "0"),
    "current_image": ("current_image", None), "time_start": ("started", None),
    "stopping_generation": (None, False), "processing_has_refined_job_count": (None, False),
    "current_latent": (None, None), "current_image_sampling_step": (None, 0), "id_live_preview": (None, 0),
    "textinfo2": (None, None), "server_start": (None, None),
}
WRITABLE = {"job_count", "job_no", "sampling_step", "sampling_steps", "textinfo", "current_image", "job_timestamp"}


class State:
    """shared.state over the current application's job queue."""

    def _job(self):
        return current_scope().ctx.jobs.current

    def __getattr__(self, key: str) -> Any:
        if key not in FIELDS:
            raise AttributeError(f"shared.state.{key} is not available in this web UI")
        attr, idle = FIELDS[key]
        job = self._job()
        if job is None or attr is None:
            return idle
        return getattr(job, attr)

    def __setattr__(self, key: str, value: Any) -> None:
        job = self._job()
        if job is not None and key in WRITABLE:
            setattr(job, key, value)

    def interrupt(self) -> None:
        current_scope().ctx.jobs.interrupt()

    def skip(self) -> None:
        current_scope().ctx.jobs.skip()

    def stop_generating(self) -> None:
        self.interrupt()

    def nextjob(self) -> None:
        job = self._job()
        if job is not None:
            job.job_no += 1
            job.sampling_step = 0

    def begin(self, job: str = "(unknown)") -> None:
        """The job queue begins jobs; nothing to do."""

    def end(self) -> None:
        """The job queue ends jobs; nothing to do."""

    def set_current_image(self) -> None:
        """Live previews are made by the sampler's progress callback; nothing to do."""

    def assign_current_image(self, image) -> None:
        job = self._job()
        if job is not None:
            job.current_image = image

    def dict(self) -> dict:
        return {k: getattr(self, k) for k in ("skipped", "interrupted", "job", "job_count", "job_timestamp",
                                              "job_no", "sampling_step", "sampling_steps")}


class TotalTQDM:
    """shared.total_tqdm: A1111's console progress bar over a whole job. This web UI shows progress
    in the page and in /progress, not on the console, so these calls have nothing to draw."""

    def reset(self) -> None: ...
    def update(self) -> None: ...
    def updateTotal(self, new_total) -> None: ...  # noqa: N802 - A1111's name
    def clear(self) -> None: ...
