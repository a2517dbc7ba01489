"""The cost model's fit from recorded engine timings (issue 25): timings in, estimate out, no
clock. The numbers are chunk timings the engine reported in real runs (benchmarks/costs.py on
the shared 2-core machine under load), replayed in the order they came."""

from __future__ import annotations

import pytest

from benchmarks import costs as bench
from workbench.jobs.costs import CostModel


def timing(*chunks: tuple[int, float]) -> dict:
    """An engine run's metadata["timing"] with these (points, seconds) chunks."""
    return {"chunks": len(chunks), "chunk_s": sum(s for _, s in chunks),
            "sample": [list(c) for c in chunks]}


# minilm-sentiment, 'cheap first': the calibration at 5 and 64 tokens (a lone gradient and a
# 4-point IG chunk at each), three requests on 5 tokens, then a lone gradient on 50 tokens
# that a busy moment made take a second. (units, chunks, the run's seconds)
MINILM_RUNS = [
    (5, [(1, 0.31177)], 0.324), (5, [(4, 0.138867)], 0.346),
    (64, [(1, 0.424096)], 0.441), (64, [(4, 0.678485)], 1.162),
    (5, [(1, 0.167147)], 0.169), (5, [(4, 0.698777)], 0.936), (5, [(32, 0.792043)], 0.902),
    (50, [(1, 1.010025)], 1.56),
]


def test_one_slow_lone_pass_at_a_new_length_is_not_every_point_of_a_batch():
    costs = CostModel()
    for units, chunks, seconds in MINILM_RUNS:
        costs.observe_run("minilm", "cpu", units, timing(*chunks), seconds, "text")
    # IG 32 steps on the 50-token text (33 passes, a preview level and the full one) then
    # took 3.72 s; the lone pass's second per point made it 32 s.
    est = costs.estimate("minilm", "cpu", passes=33, units=50, runs=2)
    assert 3.72 / 2 <= est.seconds <= 3.72 * 2, est
    # A lone pass on that length is still costed as one.
    lone = costs.estimate("minilm", "cpu", passes=1, units=50).seconds
    assert lone == pytest.approx(costs.estimate("minilm", "cpu", 1, 64).seconds, rel=0.5)


def test_each_level_of_a_progressive_run_costs_a_chunk_of_its_own():
    costs = CostModel()
    # 4 ms per chunk + 1 ms per point, at one image size.
    for n in (8, 16, 64, 64):
        costs.observe_run("m", "cpu", 4096, timing((n, 0.004 + 0.001 * n)), None)
    one = costs.raw_estimate("m", "cpu", passes=33, units=4096, runs=1)
    two = costs.raw_estimate("m", "cpu", passes=33, units=4096, runs=2)
    assert one == pytest.approx(0.004 + 0.033, rel=0.05)
    assert two - one == pytest.approx(0.004, rel=0.05)


def row(model: str, request: str, ratio: float, shown: str = "no") -> dict:
    return {"model": model, "order": "cheap first", "request": request, "passes": 1,
            "estimate": 1.0, "low": 0.5, "high": 2.0, "measured": ratio, "ratio": ratio,
            "goal": 2.0, "ok": 0.5 <= ratio <= 2.0, "calibration_s": 1.5, "shown": shown,
            "decode_s": 0.0}


def test_a_partial_benchmark_run_keeps_the_other_models_rows():
    first = bench.merged("", [row("shapes-cnn", "gradient", 1.1),
                              row("minilm-sentiment", "IG 16 steps, 500 tokens", 3.0,
                                  "question")], "cpu", 0.5, "2026-12-07 18:00 UTC")
    assert "1 of 2 estimates within their goal; of the 1 a person sees" in first
    again = bench.merged(first, [row("shapes-cnn", "IG 1024 steps", 1.2)], "cpu", 0.4,
                         "2026-12-07 18:30 UTC")
    assert "| shapes-cnn | cheap first | IG 1024 steps |" in again
    assert "| shapes-cnn | cheap first | gradient |" not in again  # shapes-cnn measured anew
    assert "| minilm-sentiment | cheap first | IG 16 steps, 500 tokens |" in again
    assert "- minilm-sentiment: measured 2026-12-07 18:00 UTC" in again
    assert "- shapes-cnn: measured 2026-12-07 18:30 UTC" in again
    # An older table, of another shape (another estimator), is not mixed in.
    assert bench.kept_rows("| model | order | request |\n| a | b | c |") == ({}, {})


def test_a_tiny_request_slowed_by_a_busy_moment_does_not_widen_a_long_ones_range():
    costs = CostModel()
    for n in (8, 16, 64, 64):
        costs.observe_run("m", "cpu", 4096, timing((n, 0.004 + 0.001 * n)), None)
    # Recorded on shapes-cnn: lone gradients estimated at 0.02 s took 0.57 s (the thread pool
    # waking up on a loaded machine), and 0.04 s; IG 256 was right.
    for raw, measured in ((0.02, 0.57), (0.02, 0.04), (3.24, 3.20), (0.04, 0.07)):
        costs.observe_outcome("m", "cpu", raw, measured)
    est = costs.estimate("m", "cpu", passes=2064, units=4096, runs=4)
    assert est.high < 3 * est.seconds and est.low > est.seconds / 3, est


def test_a_size_measured_at_a_busy_moment_does_not_make_shorter_texts_dearer():
    costs = CostModel()
    # minilm-sentiment, 'expensive first': the calibration at 16 tokens ran while the machine
    # was ten times slower; IG 32 on 50 tokens ran after it at the usual speed.
    runs = [(16, [(1, 1.90332)], 1.92), (16, [(16, 3.067274)], 4.552),
            (500, [(1, 1.678618)], 1.704), (500, [(4, 3.683532)], 5.243),
            (500, [(4, 3.675676)], 5.237), (500, [(8, 6.364549), (8, 6.926149)], 14.331),
            (500, [(1, 1.678186)], 1.692), (50, [(4, 0.589815)], 0.944),
            (50, [(32, 2.565311)], 2.773), (50, [(1, 0.667278)], 0.669)]
    for units, chunks, seconds in runs:
        costs.observe_run("minilm", "cpu", units, timing(*chunks), seconds, "text")
    fit = costs.fit("minilm", "cpu")
    assert fit.per_point(5) <= fit.per_point(50) <= fit.per_point(500)
    # IG 32 on 5 tokens then took 0.73 s; 16 tokens' busy rate made it 6.5 s.
    assert costs.estimate("minilm", "cpu", passes=33, units=5, runs=2).seconds < 4.0
