"""The scheduler with real threads: limit, round-robin fairness, identical work once, batching,
Stop while queued and while running, and the queue position/wait it reports."""

from __future__ import annotations

import threading
import time

import pytest

from workbench.jobs.scheduler import Job, Scheduler, yield_turn


class Recorder:
    """run_batch callables that log what ran, optionally blocking until released."""

    def __init__(self):
        self.calls: list[list] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def runner(self, hold: threading.Event | None = None):
        def run_batch(payloads):
            with self.lock:
                self.calls.append(list(payloads))
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            if hold is not None:
                assert hold.wait(10)
            else:
                time.sleep(0.01)
            with self.lock:
                self.active -= 1
            return [f"done:{p}" for p in payloads]
        return run_batch


def start(scheduler: Scheduler, job: Job, results: dict, **kwargs) -> threading.Thread:
    def target():
        try:
            results[job.key] = scheduler.run(job, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - recorded for the test's assertions
            results[job.key] = exc
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def occupy(scheduler: Scheduler, rec: Recorder, results: dict):
    """A job that holds the only slot until the returned event is set."""
    hold = threading.Event()
    thread = start(scheduler, Job("blocker", "block", "block", rec.runner(hold)), results)
    wait_until(lambda: scheduler.running() == 1)
    return hold, thread


def test_concurrency_limit_is_respected():
    rec, results = Recorder(), {}
    scheduler = Scheduler(concurrency=2)
    threads = [start(scheduler, Job(f"s{i}", f"k{i}", i, rec.runner()), results) for i in range(8)]
    for t in threads:
        t.join(10)
    assert rec.max_active <= 2
    assert sorted(results.values()) == sorted(f"done:{i}" for i in range(8))


def test_round_robin_one_session_does_not_starve_another():
    rec, results = Recorder(), {}
    scheduler = Scheduler(concurrency=1)
    hold, blocker = occupy(scheduler, rec, results)
    threads = []
    for i in range(5):
        threads.append(start(scheduler, Job("busy", f"busy{i}", f"busy{i}", rec.runner()), results))
        wait_until(lambda i=i: scheduler.queue_length() == i + 1)
    threads.append(start(scheduler, Job("quiet", "quiet", "quiet", rec.runner()), results))
    wait_until(lambda: scheduler.queue_length() == 6)
    hold.set()
    for t in [blocker, *threads]:
        t.join(10)
    order = [call[0] for call in rec.calls]
    # After the blocker: one of the busy session's jobs, then the quiet session's only one.
    assert order[:3] == ["block", "busy0", "quiet"]
    assert order[3:] == ["busy1", "busy2", "busy3", "busy4"]


def test_identical_work_from_several_sessions_runs_once():
    rec, results = Recorder(), {}
    scheduler = Scheduler(concurrency=1)
    hold, blocker = occupy(scheduler, rec, results)
    outs = []

    def ask(session):
        outs.append(scheduler.run(Job(session, "same", "x", rec.runner())))
    threads = [threading.Thread(target=ask, args=(f"s{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: scheduler.stats.coalesced == 2)
    hold.set()
    for t in [blocker, *threads]:
        t.join(10)
    assert outs == ["done:x"] * 3
    assert [c for c in rec.calls if c != ["block"]] == [["x"]]


def test_compatible_queued_work_is_batched_into_one_call():
    rec, results = Recorder(), {}
    scheduler = Scheduler(concurrency=1, max_batch=3)
    hold, blocker = occupy(scheduler, rec, results)
    threads = []
    for i in range(4):
        job = Job(f"s{i}", f"img{i}", f"img{i}", rec.runner(), batch_key=("m", "gradient"))
        threads.append(start(scheduler, job, results))
        wait_until(lambda i=i: scheduler.queue_length() == i + 1)
    other = Job("s9", "other", "other", rec.runner(), batch_key=("m", "gradcam"))
    threads.append(start(scheduler, other, results))
    wait_until(lambda: scheduler.queue_length() == 5)
    hold.set()
    for t in [blocker, *threads]:
        t.join(10)
    assert rec.calls[1] == ["img0", "img1", "img2"]  # capped at max_batch
    assert sorted(map(tuple, rec.calls[2:])) == [("img3",), ("other",)]
    assert all(results[f"img{i}"] == f"done:img{i}" for i in range(4))
    assert scheduler.stats.batches == 1 and scheduler.stats.batched_jobs == 3


class Stopped(BaseException):
    """What Streamlit raises in a script thread when the user clicks Stop."""


def test_stop_while_queued_removes_the_work():
    rec, results = Recorder(), {}
    scheduler = Scheduler(concurrency=1)
    hold, blocker = occupy(scheduler, rec, results)
    stop = threading.Event()

    def on_wait(waiting):
        if stop.is_set():
            raise Stopped()
    thread = start(scheduler, Job("s1", "k1", "never", rec.runner()), results, on_wait=on_wait)
    wait_until(lambda: scheduler.queue_length() == 1)
    stop.set()
    thread.join(10)
    assert isinstance(results["k1"], Stopped)
    assert scheduler.queue_length() == 0 and scheduler.stats.cancelled == 1
    hold.set()
    blocker.join(10)
    assert ["never"] not in rec.calls


def test_stopping_the_thread_that_runs_a_batch_requeues_the_others():
    rec, results = Recorder(), {}
    scheduler = Scheduler(concurrency=1)
    hold, blocker = occupy(scheduler, rec, results)
    calls = []

    def stopped_midway(payloads):
        calls.append(list(payloads))
        if len(calls) == 1:
            raise Stopped()
        return [f"ok:{p}" for p in payloads]
    first = start(scheduler, Job("s1", "a", "a", stopped_midway, batch_key="b"), results)
    wait_until(lambda: scheduler.queue_length() == 1)
    second = start(scheduler, Job("s2", "b", "b", stopped_midway, batch_key="b"), results)
    wait_until(lambda: scheduler.queue_length() == 2)
    hold.set()
    for t in (blocker, first, second):
        t.join(10)
    assert isinstance(results["a"], Stopped)
    assert results["b"] == "ok:b"
    assert calls == [["a", "b"], ["b"]]


def test_errors_reach_every_waiter_and_the_queue_moves_on():
    results = {}
    scheduler = Scheduler(concurrency=1)

    def broken(payloads):
        raise ValueError("bad settings")
    start(scheduler, Job("s1", "k", "p", broken), results).join(10)
    assert isinstance(results["k"], ValueError)
    assert scheduler.running() == 0
    assert scheduler.run(Job("s1", "k2", "p", lambda ps: ["fine"])) == "fine"


def test_position_and_estimated_wait():
    now = [100.0]
    rec, results = Recorder(), {}
    scheduler = Scheduler(concurrency=1, clock=lambda: now[0])
    hold = threading.Event()
    blocker = start(scheduler, Job("s0", "block", "b", rec.runner(hold), cost_s=10), results)
    wait_until(lambda: scheduler.running() == 1)
    jobs = [Job(f"s{i}", f"k{i}", i, rec.runner(), cost_s=4) for i in (1, 2)]
    seen = []
    threads = [start(scheduler, j, results, on_wait=seen.append) for j in jobs]
    wait_until(lambda: scheduler.queue_length() == 2)
    now[0] = 103.0  # the running job has about 7 s left
    first, second = (scheduler.waiting(j) for j in jobs)
    assert (first.position, first.queued, first.running) == (1, 2, 1)
    assert first.wait_s == pytest.approx(7.0)
    assert second.position == 2 and second.wait_s == pytest.approx(11.0)
    wait_until(lambda: len(seen) > 0)
    hold.set()
    for t in [blocker, *threads]:
        t.join(10)


def chunked(chunks: int, log: list, gate: threading.Event | None = None, on_wait=None):
    """run_batch of a long job: ``chunks`` steps with a yield_turn between them, as the
    engine's progress callback does; ``gate`` holds it after its first chunk."""
    def run_batch(payloads):
        for i in range(chunks):
            log.append(("heavy", i))
            if gate is not None and i == 0:
                assert gate.wait(10)
            yield_turn(on_wait)
        return [f"heavy:{p}" for p in payloads]
    return run_batch


def test_a_long_job_lets_other_sessions_run_between_its_chunks():
    log, results = [], {}
    scheduler = Scheduler(concurrency=1, quantum_s=0.0)
    gate = threading.Event()
    heavy = start(scheduler, Job("heavy-user", "h", "h", chunked(4, log, gate)), results)
    wait_until(lambda: log == [("heavy", 0)])

    def light(payloads):
        log.append(("light", payloads[0]))
        return [f"light:{payloads[0]}"]
    others = [start(scheduler, Job(f"u{i}", f"l{i}", i, light), results) for i in range(2)]
    wait_until(lambda: scheduler.queue_length() == 2)
    gate.set()
    for t in (heavy, *others):
        t.join(10)
    # Both short requests ran after the heavy job's first chunk, not after its last; the heavy
    # job went on from its second chunk (nothing recomputed) and finished.
    assert log[:3] == [("heavy", 0), ("light", 0), ("light", 1)]
    assert [e for e in log if e[0] == "heavy"] == [("heavy", i) for i in range(4)]
    assert results == {"h": "heavy:h", "l0": "light:0", "l1": "light:1"}
    assert scheduler.running() == 0 and scheduler.queue_length() == 0


def test_a_long_job_keeps_its_slot_within_its_quantum_and_alone():
    log, results = [], {}
    alone = Scheduler(concurrency=1, quantum_s=0.0)
    assert alone.run(Job("s", "h", "h", chunked(3, log))) == "heavy:h"  # nobody else: no pause
    scheduler = Scheduler(concurrency=1, quantum_s=60.0)
    gate = threading.Event()
    heavy = start(scheduler, Job("heavy-user", "h2", "h", chunked(3, log, gate)), results)
    wait_until(lambda: len(log) == 4)
    light = start(scheduler, Job("u", "l", 0, lambda ps: [log.append("light") or "light"]), results)
    wait_until(lambda: scheduler.queue_length() == 1)
    gate.set()
    for t in (heavy, light):
        t.join(10)
    assert log[4:] == [("heavy", 1), ("heavy", 2), "light"]  # within its quantum it goes on
    assert yield_turn() == 0.0  # outside a scheduled job


def test_stop_while_stepped_aside_ends_the_long_job_and_the_queue_moves_on():
    log, results = [], {}
    scheduler = Scheduler(concurrency=1, quantum_s=0.0)
    gate, release, stop = threading.Event(), threading.Event(), threading.Event()

    def on_wait(waiting):
        if stop.is_set():
            raise Stopped()
    heavy = start(scheduler, Job("heavy-user", "h", "h", chunked(5, log, gate, on_wait)), results)
    wait_until(lambda: log == [("heavy", 0)])

    def held(payloads):
        assert release.wait(10)
        return ["light"]
    light = start(scheduler, Job("u", "l", 0, held), results)
    wait_until(lambda: scheduler.queue_length() == 1)
    gate.set()
    wait_until(lambda: scheduler.queue_length() == 1 and scheduler.running() == 1)  # heavy aside
    stop.set()
    heavy.join(10)
    assert isinstance(results["h"], Stopped)
    release.set()
    light.join(10)
    assert results["l"] == "light" and log == [("heavy", 0)]
    assert scheduler.running() == 0 and scheduler.queue_length() == 0
    assert scheduler.run(Job("s", "after", 1, lambda ps: ["fine"])) == "fine"
