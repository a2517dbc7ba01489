"""The per-model lock is held for one pass, not for a whole request: a second session on the
same model is served between the chunks of a long one, and concurrent hooked methods on one
shared model still give exactly the maps they give alone."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import saliency_core as sc
from saliency_core.engine.stream import FairLock

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

WAIT_S = 60


def shapes_input(seed: int = 0) -> tuple[object, torch.Tensor]:
    loaded = sc.load_model("shapes-cnn", "cpu")
    torch.manual_seed(seed)
    return loaded, torch.rand(1, 3, 64, 64)


def _short_request_between_chunks(long_call) -> dict:
    """Runs ``long_call(progress)`` and, while it is paused after its first chunk, a short
    gradient on the same model; returns what each finished with."""
    loaded, x = shapes_input()
    short_done = threading.Event()
    paused = threading.Event()
    outcome: dict = {}

    def progress(done, total):
        if 0 < done < total and not paused.is_set():
            paused.set()
            outcome["short_finished_meanwhile"] = short_done.wait(WAIT_S)

    def long_request():
        outcome["long"] = long_call(loaded, x, progress)

    def short_request():
        paused.wait(WAIT_S)
        outcome["short"] = sc.attribute(loaded, x * 0.5, "gradient", target=1)
        short_done.set()

    threads = [threading.Thread(target=long_request), threading.Thread(target=short_request)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * WAIT_S)
    return outcome


def test_a_short_request_runs_between_the_chunks_of_a_long_one():
    # With the lock held for the whole request the short one could never finish meanwhile.
    outcome = _short_request_between_chunks(
        lambda loaded, x, progress: sc.attribute(loaded, x, "integrated_gradients", target=0,
                                                 steps=64, batch_size=8, progress=progress))
    assert outcome.get("short_finished_meanwhile") is True
    assert outcome["long"].shape == (1, 3, 64, 64) and outcome["short"].shape == (1, 3, 64, 64)


def test_several_targets_let_other_requests_through_between_chunks():
    for method in ("gradcam", "gradient"):
        outcome = _short_request_between_chunks(
            lambda loaded, x, progress, m=method: sc.attribute_targets(
                loaded, x, method=m, top_k=4, batch_size=1, progress=progress))
        assert outcome.get("short_finished_meanwhile") is True, method
        assert outcome["long"].attribution.shape[0] == 4


def test_refiner_lets_other_requests_through_between_chunks():
    def refine(loaded, x, progress):
        refiner = sc.Refiner(loaded, x, "integrated_gradients", target=0, steps=8, batch_size=2,
                             progress=progress)
        return refiner.attribute(steps=32)

    outcome = _short_request_between_chunks(refine)
    assert outcome.get("short_finished_meanwhile") is True
    assert outcome["long"].shape[1:] == (3, 64, 64)


def test_concurrent_hooked_methods_on_one_model_match_their_solo_maps():
    loaded, x = shapes_input(1)
    methods = ["gradcam", "guided_backprop", "guided_gradcam", "deconvnet", "gradient"]
    solo = {m: sc.attribute(loaded, x, m, target=2) for m in methods}
    got: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    errors: list[BaseException] = []

    def worker(method):
        try:
            for _ in range(4):
                got[method].append(sc.attribute(loaded, x, method, target=2, batch_size=1))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(m,)) for m in methods]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not errors, errors
    for method in methods:
        assert len(got[method]) == 4
        for attr in got[method]:
            torch.testing.assert_close(attr, solo[method], rtol=1e-4, atol=1e-6)


def test_fair_lock_serves_waiters_in_arrival_order_and_is_reentrant():
    lock = FairLock()
    order: list[int] = []
    lock.acquire()
    with lock:  # reentrant
        pass
    arrived = []

    def waiter(i):
        arrived.append(i)
        with lock:
            order.append(i)

    threads = []
    for i in range(4):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        while len(arrived) <= i or not _queued(lock, i + 1):
            pass
        threads.append(t)
    lock.release()
    for t in threads:
        t.join(WAIT_S)
    assert order == [0, 1, 2, 3]


def _queued(lock: FairLock, n: int) -> bool:
    with lock._cond:
        return len(lock._queue) >= n


@pytest.mark.slow
def test_a_heavy_request_steps_aside_in_the_scheduler_for_another_session():
    """The device queue with the real engine: IG with many steps, its progress calling
    yield_turn as the pages' progress bar does, lets another session's gradient run after its
    first chunk, and still ends with the map it gives alone."""
    from workbench.jobs.scheduler import Job, Scheduler, yield_turn

    loaded, x = shapes_input()
    scheduler = Scheduler(concurrency=1, quantum_s=0.0)
    order: list[str] = []

    def progress(done, total):
        if done == 8:  # the first chunk is done: wait until the other session has queued
            deadline = time.monotonic() + WAIT_S
            while scheduler.queue_length() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        yield_turn()

    def heavy(_payloads):
        out = sc.attribute(loaded, x, "integrated_gradients", target=0, steps=64, batch_size=8,
                           progress=progress)
        order.append("heavy")
        return [out]

    def light(_payloads):
        out = sc.attribute(loaded, x * 0.5, "gradient", target=1)
        order.append("light")
        return [out]

    results: dict = {}
    heavy_thread = threading.Thread(target=lambda: results.setdefault(
        "heavy", scheduler.run(Job("heavy-user", "h", None, heavy))))
    heavy_thread.start()
    while scheduler.running() == 0:
        time.sleep(0.01)
    results["light"] = scheduler.run(Job("other-user", "l", None, light))
    heavy_thread.join(3 * WAIT_S)
    assert order == ["light", "heavy"]
    alone = sc.attribute(loaded, x, "integrated_gradients", target=0, steps=64, batch_size=8)
    assert torch.equal(results["heavy"], alone)
