"""Cost estimates, the per-request budget, the hard limit and the rate limit on a real page
(the Image page under AppTest, bundled shapes model), plus the estimate's arithmetic."""

from __future__ import annotations

import pytest
from support.apptest import run_app_page
from support.browser import REPO_ROOT

from workbench.jobs import compute
from workbench.jobs.costs import (
    Budget,
    CostModel,
    Estimate,
    RateLimiter,
    estimate_passes,
)

PAGE = str(REPO_ROOT / "pages" / "image.py")
QUERY = {"model": "shapes-cnn", "method": "integrated_gradients", "p.steps": "64"}


@pytest.fixture(autouse=True)
def empty_result_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "share"))
    compute.result_cache.clear()
    yield
    compute.result_cache.clear()


def texts(at) -> str:
    return " ".join(e.value for kind in ("error", "warning", "caption", "markdown")
                    for e in at.get(kind) if isinstance(getattr(e, "value", None), str))


def test_passes_follow_the_settings():
    assert estimate_passes("gradient", {}) == 1
    assert estimate_passes("integrated_gradients", {"steps": 64}) == 65
    assert estimate_passes("integrated_gradients", {"steps": 16, "baseline_samples": 4}) == 65
    assert estimate_passes("smoothgrad", {"samples": 10, "base": "integrated_gradients"}) == 510
    # The base method's own settings count (SmoothGrad(256) over IG(128)).
    assert estimate_passes("smoothgrad", {"samples": 256, "base": "integrated_gradients",
                                          "steps": 128}) == 256 * 129
    assert estimate_passes("gradcam", {"layer": None}) == 1


def timing(*chunks: tuple[int, float]) -> dict:
    """An engine run's metadata["timing"] with these (points, seconds) chunks."""
    return {"chunks": len(chunks), "chunk_s": sum(s for _, s in chunks),
            "sample": [list(c) for c in chunks]}


def test_cost_model_separates_a_chunk_from_a_pass_and_scales_with_the_input():
    costs = CostModel()
    assert costs.estimate("m", "cpu", 10) is None
    # 10 ms per chunk + 1 ms per point: a lone pass (11 ms) is not a pass inside a batch.
    for n in (1, 8, 64, 64):
        costs.observe_run("m", "cpu", 100, timing((n, 0.010 + 0.001 * n)), 0.010 + 0.001 * n)
    est = costs.estimate("m", "cpu", passes=6400, units=100)
    assert est.seconds == pytest.approx(100 * 0.010 + 6400 * 0.001, rel=0.05)
    assert est.low < est.seconds < est.high
    # Pixels: four times the input, four times a point's part.
    bigger = costs.estimate("m", "cpu", passes=6400, units=400).seconds
    assert bigger == pytest.approx(100 * 0.010 + 4 * 6400 * 0.001, rel=0.2)


def test_one_slow_run_moves_the_fit_little():
    costs = CostModel()
    for _ in range(6):
        costs.observe_run("m", "cpu", 1, timing((64, 0.064)), 0.07)
    costs.observe_run("m", "cpu", 1, timing((64, 3.2)), 3.3)  # a paused or cold run: 50 x
    assert costs.estimate("m", "cpu", 640).seconds == pytest.approx(0.64, rel=0.2)


def test_text_cost_follows_tokens_across_lengths():
    costs = CostModel()
    # 20 ms + 1 ms per token per point, seen at 8 and 64 tokens only.
    for tokens in (8, 64):
        for n in (1, 8):
            chunk = n * (0.020 + 0.001 * tokens)
            costs.observe_run("t", "cpu", tokens, timing((n, chunk)), chunk, "text")
    est = costs.estimate("t", "cpu", passes=51, units=512).seconds
    assert est == pytest.approx(51 * (0.020 + 0.512), rel=0.25)


def test_budget_refuses_only_what_is_over_the_limit_even_at_the_fast_end():
    budget = Budget(30, 300)
    assert [budget.verdict(s) for s in (29, 31, 301)] == ["ok", "confirm", "refused"]
    assert budget.verdict(Estimate(400, 200, 800)) == "confirm"  # it may finish in time
    assert budget.verdict(Estimate(400, 320, 800)) == "refused"


def test_rate_limit_slides_over_a_minute():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.acquire("ada", 2) == 0 and limiter.acquire("ada", 2) == 0
    assert limiter.acquire("ada", 2) == pytest.approx(60.0)
    assert limiter.acquire("grace", 2) == 0  # per user
    now[0] = 60.5
    assert limiter.acquire("ada", 2) == 0


def test_over_budget_link_shows_the_estimate_and_runs_after_an_explicit_click(monkeypatch):
    monkeypatch.setenv("SALIENCY_REQUEST_BUDGET_S", "0.000001")
    monkeypatch.setenv("SALIENCY_REQUEST_LIMIT_S", "100000")
    at = run_app_page(PAGE, QUERY)
    message = texts(at).replace("\\", "")  # the page shows messages as escaped plain text
    assert "65 model passes of shapes-cnn on cpu" in message
    # The budget as set, however small (it was printed as "0 s").
    assert "more than the 1e-06 s budget per request" in message
    assert not at.get("plotly_chart"), "an over-budget request ran without a click"
    (button,) = [b for b in at.button if b.label.startswith("Run anyway")]
    button.click().run()
    assert not at.exception
    assert at.get("plotly_chart"), "the confirmed request did not run"


def test_request_above_the_hard_limit_is_refused_with_the_limit_named(monkeypatch):
    monkeypatch.setenv("SALIENCY_REQUEST_BUDGET_S", "0.000001")
    monkeypatch.setenv("SALIENCY_REQUEST_LIMIT_S", "0.000002")
    at = run_app_page(PAGE, QUERY)
    message = texts(at).replace("\\", "")
    assert "Refused" in message and "the limit per request on this server (2e-06 s)" in message
    assert not [b for b in at.button if b.label.startswith("Run anyway")]
    assert not at.get("plotly_chart")


def test_rate_limit_refuses_with_the_wait(monkeypatch):
    monkeypatch.setenv("SALIENCY_RATE_PER_MINUTE", "1")
    at = run_app_page(PAGE, {**QUERY, "p.steps": "8"})
    assert at.get("plotly_chart")
    at.selectbox(key="image.method").set_value("gradient").run()
    assert "computations in the last minute" in texts(at)
