"""The front end's side of the workers: one queue (ctx.jobs), many Ray actors (worker.py).

- `submit` is what `generation.submit` calls when the app has workers: the job waits in ctx.jobs,
  whose scheduler (`schedule`, with scheduling.plan) starts it on an idle worker, preferring one
  that holds its checkpoint. The job's thread then calls the actor and, until the result is there,
  mirrors the worker's progress and live preview onto the local Job every POLL_S (so /progress and
  the UI read it as in one process); Interrupt / Skip on the local Job are sent to the worker at once.
- Faults: a worker that dies mid-job (its process killed, its node gone) fails the call with a Ray
  error; one that stops answering for HEALTH_TIMEOUT_S is killed. Either way Ray restarts the actor
  (max_restarts) while the job runs again on another worker with the same seed (fixed here before
  the first try, so the same image). A second failure returns the error to the caller. A device
  error (CUDA's illegal access...) also restarts the worker. Request errors are never retried.
- Membership: every RECONCILE_S the pool asks how many workers the cluster has room for (`desired`,
  from cluster.py) and starts or drops actors, so GPUs that join are used and workers whose machine
  left are dropped without a restart of the front end; idle workers are health-checked then too.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from modules.distributed import scheduling
from modules.distributed.handoff import fixed_seeds, keep_settings, mirror, wanted_checkpoint
from modules.distributed.worker import JobSpec
from modules.errors import RequestError
from modules.generation.request import GenerationResult

log = logging.getLogger("sdwebui.workers")

POLL_S = 0.1              # progress mirroring
HEALTH_TIMEOUT_S = 30.0   # a worker that answers nothing for this long is killed and restarted
RECONCILE_S = 2.0         # membership and health of idle workers
HEALTH_CHECK_S = 10.0     # an idle worker that does not answer status() in this time is restarted
RESTART_TIMEOUT_S = 120.0  # a worker not back after this long is dropped (its machine left)
RETRY_WAIT_S = 300.0      # a job to re-run waits this long for a worker before it fails

STARTING, IDLE, BUSY, RESTARTING, DROPPED = "starting", "idle", "busy", "restarting", "dropped"


@dataclass(eq=False)
class WorkerHandle:
    id: int
    actor: Any
    state: str = STARTING
    info: dict = field(default_factory=dict)        # ready(): pid, host, device
    status: dict = field(default_factory=dict)      # the last status() answer
    models: tuple[str, ...] = ()                     # checkpoints held, most recent first
    job: Any = None                                  # the front end's Job running there
    since: float = field(default_factory=time.time)  # of the state
    restarts: int = 0
    error: str = ""

    def set_state(self, state: str) -> None:
        self.state, self.since = state, time.time()


@dataclass(eq=False)
class _Claim:
    """A job to re-run, waiting for a worker other than those in `tried`."""
    job: Any
    model: str | None
    tried: set[int]
    worker: WorkerHandle | None = None
    ready: threading.Event = field(default_factory=threading.Event)


class WorkerPool:
    def __init__(self, ctx, ray, actor_class, desired: Callable[[], int], actor_options: dict | None = None,
                 threads: int = 1, ui_sandbox: Callable | None = None, ui_environment: Callable | None = None):
        self.ctx, self.ray = ctx, ray
        self.actor_class, self.actor_options, self.threads = actor_class, dict(actor_options or {}), threads
        self.desired = desired
        self.ui_sandbox, self.ui_environment = ui_sandbox, ui_environment
        self._lock = threading.RLock()
        self._workers: dict[int, WorkerHandle] = {}
        self._next_id = 0
        self._wants: dict[Any, str | None] = {}   # remote job -> checkpoint title
        self._claims: list[_Claim] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # the last runs: {"job", "worker", "outcome": result | request_error | failed | died, "step",
        # "controls" (the step each control reached the worker at), "seconds" / "cpu_seconds" (wall and CPU
        # time of the worker's run)}
        self.history: deque[dict] = deque(maxlen=200)

    # -- life cycle --------------------------------------------------------------------------------
    def start(self, wait: float | None = None) -> "WorkerPool":
        """Start the workers the cluster has room for and the membership thread; with `wait`, block
        until they answer (tests, benchmarks) or `wait` seconds pass."""
        self.ctx.jobs.scheduler = self.schedule
        self.reconcile()
        self._thread = threading.Thread(target=self._watch, name="worker-pool", daemon=True)
        self._thread.start()
        if wait:
            deadline = time.time() + wait
            while time.time() < deadline and not self._all_up():
                time.sleep(0.1)
        return self

    def _all_up(self) -> bool:
        with self._lock:
            workers = list(self._workers.values())
        return bool(workers) and all(w.state in (IDLE, BUSY) for w in workers)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for w in workers:
            self._kill(w, restart=False)
        self.ctx.jobs.scheduler = None

    def workers(self) -> list[WorkerHandle]:
        with self._lock:
            return sorted(self._workers.values(), key=lambda w: w.id)

    # -- membership --------------------------------------------------------------------------------
    def reconcile(self) -> None:
        try:
            desired = int(self.desired())
        except Exception as e:  # noqa: BLE001 - the cluster may be restarting; try again later
            log.warning("could not read the cluster's resources: %s", e)
            return
        with self._lock:
            live = [w for w in self._workers.values() if w.state != DROPPED]
            extra = len(live) - desired
            spare = sorted((w for w in live if w.state in (STARTING, RESTARTING)), key=lambda w: -w.id)
        for w in spare[:max(0, extra)]:
            log.info("worker %s dropped: the cluster has room for %s workers", w.id, desired)
            self._drop(w)
        for _ in range(max(0, -extra)):
            self._spawn()

    def _spawn(self) -> WorkerHandle:
        with self._lock:
            wid = self._next_id
            self._next_id += 1
            actor = self.actor_class.options(**self.actor_options).remote(self.ctx.args, wid, self.threads,
                                                                          self.ui_sandbox, self.ui_environment)
            w = self._workers[wid] = WorkerHandle(wid, actor)
        threading.Thread(target=self._await_ready, args=(w, None), name=f"worker-{wid}-start", daemon=True).start()
        return w

    def _await_ready(self, w: WorkerHandle, deadline: float | None) -> None:
        """Wait for a (re)started worker to answer; drop it at the deadline (its machine left)."""
        errors = self.ray.exceptions
        while not self._stop.is_set() and w.state in (STARTING, RESTARTING):
            if deadline is not None and time.time() > deadline:
                log.warning("worker %s did not come back within %.0f s: dropped", w.id, RESTART_TIMEOUT_S)
                self._drop(w)
                return
            try:
                info = self.ray.get(w.actor.ready.remote(), timeout=10)
            except errors.GetTimeoutError:
                continue  # still starting (or waiting for resources)
            except errors.RayError as e:
                error = str(e).splitlines()[0][:300]
                if error != w.error:
                    log.warning("worker %s does not start yet: %s", w.id, error)
                w.error = error
                time.sleep(0.5)
                continue
            with self._lock:
                if w.state not in (STARTING, RESTARTING):
                    return
                if w.state == RESTARTING:
                    w.restarts += 1
                w.info, w.models, w.job = info, (), None
                w.set_state(IDLE)
            log.info("worker %s ready: pid %s on %s, %s", w.id, info["pid"], info["host"], info["device"])
            self.ctx.jobs.wake()
            return

    def _drop(self, w: WorkerHandle) -> None:
        with self._lock:
            w.set_state(DROPPED)
            self._workers.pop(w.id, None)
        self._kill(w, restart=False)

    def _kill(self, w: WorkerHandle, restart: bool) -> None:
        try:
            self.ray.kill(w.actor, no_restart=not restart)
        except Exception as e:  # noqa: BLE001 - already gone
            log.debug("killing worker %s: %s", w.id, e)

    def lost(self, w: WorkerHandle, reason: str, kill: bool = False) -> None:
        """The worker died or must restart: Ray restarts the actor; jobs keep going elsewhere."""
        with self._lock:
            if w.state in (RESTARTING, DROPPED, STARTING):
                return
            log.warning("worker %s lost (%s): restarting it", w.id, reason)
            w.error, w.models, w.job = reason, (), None
            w.set_state(RESTARTING)
        if kill:
            self._kill(w, restart=True)
        threading.Thread(target=self._await_ready, args=(w, time.time() + RESTART_TIMEOUT_S),
                         name=f"worker-{w.id}-restart", daemon=True).start()
        self.ctx.jobs.wake()

    def _watch(self) -> None:
        while not self._stop.wait(RECONCILE_S):
            self.reconcile()
            self._check_health()

    def _check_health(self) -> None:
        """status() from every running worker: fresh loaded-model lists for /memory, and an idle
        worker that does not answer (killed between jobs) is restarted before a job meets it."""
        ray, errors = self.ray, self.ray.exceptions
        asked = {w.actor.status.remote(): w for w in self.workers() if w.state in (IDLE, BUSY)}
        if not asked:
            return
        answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=HEALTH_CHECK_S)
        for ref, w in asked.items():
            if ref not in answered:  # a busy worker's own job notices when it stops answering
                if w.state == IDLE:
                    self.lost(w, f"did not answer a health check in {HEALTH_CHECK_S:.0f} s", kill=True)
                continue
            try:
                status = ray.get(ref)
            except errors.RayError as e:
                if w.state == IDLE:
                    self.lost(w, f"died while idle ({type(e).__name__})")
                continue
            with self._lock:
                w.status = status
                if w.state == IDLE:  # what it holds now (an unload may have run since its last job)
                    w.models = tuple(reversed(status["loaded"]))

    # -- scheduling (called by ctx.jobs under its lock) ---------------------------------------------
    def schedule(self, waiting: list, running: list) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        with self._lock:
            limit = max(1, int(self.ctx.opts.sd_checkpoints_limit))
            slots = {w.id: scheduling.Slot(w.id, w.models, limit, busy=w.state != IDLE)
                     for w in self._workers.values() if w.state in (IDLE, BUSY)}
            for claim in [c for c in self._claims if c.worker is None]:  # re-runs first
                others = [s for s in slots.values() if s.key not in claim.tried]
                candidates = others if any(s.key not in claim.tried for s in slots.values()) else list(slots.values())
                chosen = scheduling.plan(candidates, [scheduling.Want(claim, claim.model)])
                if chosen:
                    claim.worker = self._take(chosen[0][1].key, claim.job)
                    self._claims.remove(claim)
                    claim.ready.set()
            remote = []
            for job in waiting:
                if job in self._wants:
                    remote.append(scheduling.Want(job, self._wants[job]))
                else:
                    out.append((job, None))  # the front end's own jobs (a checkpoint choice): no worker
            for want, slot in scheduling.plan(list(slots.values()), remote):
                out.append((want.key, self._take(slot.key, want.key)))
        return out

    def _take(self, wid: int, job) -> WorkerHandle:
        w = self._workers[wid]
        w.job = job
        w.set_state(BUSY)
        want = self._wants.get(job)
        if want:
            w.models = (want, *[m for m in w.models if m != want])
        return w

    # -- running a job ------------------------------------------------------------------------------
    def submit(self, request, prepared, job, on_wait=None, cancelled=None):
        """generation.submit with workers: the seed fixed here (a re-run makes the same image), the
        job queued for the worker that suits its checkpoint, the result (or RequestError) returned."""
        with self._lock:
            if not any(w.state != DROPPED for w in self._workers.values()):
                raise RequestError("no worker is running: check the Ray cluster (`ray status`) and the "
                                   "workers' log", status=503)
        request = fixed_seeds(request, prepared)
        with self._lock:
            self._wants[job] = wanted_checkpoint(self.ctx, prepared)
        try:
            result = self.ctx.jobs.run(job, lambda j: self._execute(j, request), on_wait=on_wait,
                                       cancelled=cancelled)
        finally:
            with self._lock:
                self._wants.pop(job, None)
        if not prepared.restore_settings and prepared.override_settings:
            keep_settings(self.ctx, prepared.override_settings)
        return result

    def _execute(self, job, request):
        worker: WorkerHandle | None = job.slot
        failures: list[str] = []
        tried: set[int] = set()
        while True:
            if worker is None:
                worker = self._claim(job, tried)
            tried.add(worker.id)
            job.slot = worker
            outcome = self._attempt(worker, job, request)
            if "result" in outcome:
                return outcome["result"]
            if "request_error" in outcome:
                message, field_, status = outcome["request_error"]
                raise RequestError(message, field_, status)
            failures.append(outcome["failed"])
            if job.interrupted:  # nothing to finish: the user stopped it
                return GenerationResult(interrupted=True, comments=f"interrupted; its worker failed ({failures[-1]})")
            if len(failures) >= 2:
                raise RequestError("the job failed twice: " + "; then ".join(failures), status=500)
            log.warning("job %s failed on worker %s (%s): running it again on another worker",
                        job.id, worker.id, outcome["failed"])
            job.begin_image(0, 0)
            job.current_image = None
            worker = None

    def _claim(self, job, tried: set[int]) -> WorkerHandle:
        claim = _Claim(job, self._wants.get(job), set(tried))
        with self._lock:
            self._claims.append(claim)
        deadline = time.time() + RETRY_WAIT_S
        try:
            while not claim.ready.is_set():
                self.ctx.jobs.wake()
                if time.time() > deadline or job.interrupted:
                    raise RequestError("no worker could take the job again after its worker failed", status=503)
                claim.ready.wait(0.2)
        finally:
            with self._lock:
                if claim in self._claims:
                    self._claims.remove(claim)
        return claim.worker

    def _attempt(self, w: WorkerHandle, job, request) -> dict:
        ray = self.ray
        spec = JobSpec(id=job.id, name=job.name, checkpoint=self._wants.get(job),
                       settings=dict(self.ctx.opts.data), interrupted=job.interrupted, skipped=job.skipped)
        job.on_control = lambda what: w.actor.control.remote(job.id, what)
        try:
            ref = w.actor.run.remote(spec, request)
            seen = 0
            while not ray.wait([ref], timeout=POLL_S)[0]:
                try:
                    snap = ray.get(w.actor.progress.remote(job.id, seen), timeout=HEALTH_TIMEOUT_S)
                except ray.exceptions.GetTimeoutError:
                    self.lost(w, f"no answer for {HEALTH_TIMEOUT_S:.0f} s", kill=True)
                    return {"failed": f"worker {w.id} stopped answering"}
                except ray.exceptions.RayError:
                    continue  # the run call fails too and says why
                if snap:
                    seen = mirror(job, snap, seen)
            outcome = ray.get(ref)
        except ray.exceptions.RayError as e:
            self.lost(w, f"died during job {job.id} ({type(e).__name__})")
            self.history.append({"job": job.id, "worker": w.id, "outcome": "died"})
            return {"failed": f"worker {w.id} died ({type(e).__name__})"}
        finally:
            job.on_control = None
        kind = next(k for k in ("result", "request_error", "failed") if k in outcome)
        self.history.append({"job": job.id, "worker": w.id, "outcome": kind, "step": outcome.get("step"),
                             "controls": outcome.get("controls", {}), "seconds": outcome.get("seconds"),
                             "cpu_seconds": outcome.get("cpu_seconds")})
        if "step" in outcome:
            job.set_step(outcome["step"])
        if outcome.get("device_lost"):
            self.lost(w, outcome["failed"], kill=True)
        else:
            self._release(w, job, outcome.get("loaded"))
        return outcome

    def _release(self, w: WorkerHandle, job, loaded: list[str] | None) -> None:
        with self._lock:
            if w.state == BUSY and w.job is job:
                if loaded is not None:
                    w.models = tuple(reversed(loaded))
                w.job = None
                w.set_state(IDLE)
        self.ctx.jobs.wake()

    # -- fan-out and listing ---------------------------------------------------------------------------
    def broadcast(self, method: str) -> None:
        """Call `method` on every running worker without waiting (unload, refresh)."""
        for w in self.workers():
            if w.state in (IDLE, BUSY):
                getattr(w.actor, method).remote()
                if method == "unload":
                    with self._lock:
                        w.models = ()

    def describe(self) -> list[dict]:
        """Each worker for /sdapi/v1/memory and the UI's panel, from what the pool knows now (no call
        to a worker, so a dead one cannot make this wait)."""
        out = []
        for w in self.workers():
            job = w.job
            status = w.status or {}
            out.append({
                "id": w.id, "state": w.state, "healthy": w.state in (IDLE, BUSY),
                "host": w.info.get("host"), "node": w.info.get("node"), "pid": w.info.get("pid"),
                "device": w.info.get("device"),
                "loaded_models": list(w.models), "loads": status.get("loads", {}),
                "jobs_done": status.get("jobs_done", 0), "restarts": w.restarts, "error": w.error or None,
                "memory": status.get("memory", {}),
                "job": None if job is None else {"id": job.id, "name": job.name, "progress": job.progress_fraction(),
                                                 "step": job.sampling_step, "steps": job.sampling_steps},
            })
        return out
