"""The process-wide model pool: one load per model however many sessions ask at once, and
least-recently-used eviction past the byte budget."""

from __future__ import annotations

import threading
import time

import torch

from workbench.jobs.modelpool import ModelPool, model_bytes


def test_model_bytes_counts_parameters_and_buffers():
    module = torch.nn.BatchNorm1d(10)  # 20 parameters + 20 float buffers + 1 int64 counter
    assert model_bytes(module) == 40 * 4 + 8


def test_lru_eviction_beyond_the_byte_budget():
    loads = []

    def load(name, device):
        loads.append(name)
        return f"{name}@{device}"
    pool = ModelPool(load, max_bytes=250, size_of=lambda loaded: 100)
    pool.get("a", "cpu")
    pool.get("b", "cpu")
    pool.get("a", "cpu")  # a is now the most recent
    pool.get("c", "cpu")  # 300 bytes: b goes
    assert pool.names() == [("a", "cpu"), ("c", "cpu")]
    assert pool.size_bytes == 200 and pool.evictions == 1
    pool.get("b", "cpu")  # loaded again; a is the oldest now
    assert loads == ["a", "b", "c", "b"]
    assert pool.names() == [("c", "cpu"), ("b", "cpu")]


def test_a_model_larger_than_the_budget_is_still_served():
    pool = ModelPool(lambda n, d: n, max_bytes=10, size_of=lambda loaded: 100)
    assert pool.get("big", "cpu") == "big"
    assert pool.get("other", "cpu") == "other"
    assert pool.names() == [("other", "cpu")]


def test_concurrent_requests_load_once():
    loads = []

    def slow_load(name, device):
        loads.append(name)
        time.sleep(0.2)
        return object()
    pool = ModelPool(slow_load, max_bytes=10**9, size_of=lambda loaded: 1)
    got = []
    threads = [threading.Thread(target=lambda: got.append(pool.get("m", "cpu"))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert loads == ["m"]
    assert len({id(g) for g in got}) == 1
