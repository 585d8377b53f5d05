import threading
import time

import pytest

from modules.jobs import JobCancelled, JobQueue


def test_jobs_run_one_at_a_time_in_fifo_order():
    q = JobQueue()
    order, running, overlap = [], [0], []
    gate = threading.Event()

    def work(job):
        running[0] += 1
        overlap.append(running[0])
        if job.name == "first":
            gate.wait(5)
        order.append(job.name)
        running[0] -= 1
        return job.name

    first = q.new_job("first")
    t1 = threading.Thread(target=q.run, args=(first, work))
    t1.start()
    while q.current is None:
        time.sleep(0.01)
    others = []
    for name in ("second", "third"):
        job = q.new_job(name)
        others.append(job)
        threading.Thread(target=q.run, args=(job, work)).start()
        while job not in q._waiting:
            time.sleep(0.01)
    assert q.position(others[0]) == 1 and q.position(others[1]) == 2
    gate.set()
    deadline = time.time() + 5
    while len(order) < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert order == ["first", "second", "third"]
    assert max(overlap) == 1


def test_interrupt_and_skip_reach_the_running_job():
    q = JobQueue()
    seen = {}

    def work(job):
        job.begin_image(0, 10)
        while not job.skipped:
            time.sleep(0.005)
        seen["skipped"] = True
        job.begin_image(1, 10)
        assert not job.skipped  # skip applies to one image only
        while not job.interrupted:
            time.sleep(0.005)
        return "stopped"

    job = q.new_job("j")
    result = {}
    t = threading.Thread(target=lambda: result.update(r=q.run(job, work)))
    t.start()
    while q.current is None:
        time.sleep(0.01)
    assert q.progress()["state"]["job"] == "j"
    q.skip()
    while "skipped" not in seen:
        time.sleep(0.01)
    q.interrupt()
    t.join(5)
    assert result["r"] == "stopped"
    assert q.current is None and not q.interrupt()


def test_a_waiting_job_can_be_withdrawn():
    q = JobQueue()
    gate = threading.Event()
    first = q.new_job("first")
    threading.Thread(target=q.run, args=(first, lambda j: gate.wait(5))).start()
    while q.current is None:
        time.sleep(0.01)
    with pytest.raises(JobCancelled):
        q.run(q.new_job("gone"), lambda j: pytest.fail("must not run"), cancelled=lambda: True)
    gate.set()
    assert q.queue_length() == 0


def test_progress_fraction_and_failure_releases_the_queue():
    q = JobQueue()
    job = q.new_job("x")
    job.job_count = 2
    job.begin_image(1, 10)
    job.set_step(5)
    assert job.progress_fraction() == pytest.approx(0.75)
    with pytest.raises(RuntimeError):
        q.run(job, lambda j: (_ for _ in ()).throw(RuntimeError("boom")))
    assert q.current is None
    assert q.run(q.new_job("y"), lambda j: 42) == 42
