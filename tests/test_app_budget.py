"""Cost estimates, the per-request budget, the hard limit and the rate limit on a real page
(the Image page under AppTest, bundled shapes model), plus the estimate's arithmetic."""

from __future__ import annotations

import pytest
from support.apptest import run_app_page
from support.browser import REPO_ROOT

from workbench.jobs import compute
from workbench.jobs.costs import Budget, CostModel, RateLimiter, estimate_passes

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
    assert estimate_passes("gradcam", {"layer": None}) == 1


def test_cost_model_and_budget_arithmetic():
    costs = CostModel()
    assert costs.estimate("m", "cpu", 10) is None
    costs.observe("m", "cpu", passes=10, units=1, seconds=2.0)
    assert costs.estimate("m", "cpu", 100) == pytest.approx(20.0)
    costs.observe("m", "cpu", passes=100, units=4, seconds=8.0)  # 0.02 s per pass and unit
    assert costs.pass_seconds("m", "cpu") == pytest.approx(0.3 * 0.02 + 0.7 * 0.2)
    budget = Budget(30, 300)
    assert [budget.verdict(s) for s in (29, 31, 301)] == ["ok", "confirm", "refused"]


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
    assert "Refused" in message and "the limit per request on this server is 2e-06 s" in message
    assert not [b for b in at.button if b.label.startswith("Run anyway")]
    assert not at.get("plotly_chart")


def test_rate_limit_refuses_with_the_wait(monkeypatch):
    monkeypatch.setenv("SALIENCY_RATE_PER_MINUTE", "1")
    at = run_app_page(PAGE, {**QUERY, "p.steps": "8"})
    assert at.get("plotly_chart")
    at.selectbox(key="image.method").set_value("gradient").run()
    assert "computations in the last minute" in texts(at)
