"""The device's queue as two users see it, in two browser sessions of one served app (one job
at a time): while one session's long Integrated Gradients run holds the model, the other's
request shows its place in the queue and the estimated wait in its progress bar, and its Stop
takes the request out of the queue (the server's Prometheus gauges say so) while the long run
goes on. With turns (the default), the long run steps aside instead: the other session gets
its map while the long run's bar says it is paused, and the long run then goes on."""

from __future__ import annotations

import contextlib
import re
import time
import urllib.request

import pytest
from support.browser import (
    APP_RUN_TIMEOUT_MS,
    OUTPUT_DIR,
    REPO_ROOT,
    app_url,
    assert_no_exception,
    free_port,
    serve_streamlit,
    wait_for_app,
)

pytestmark = pytest.mark.browser

MODEL = "efficientnet-lite0"
# Thousands of passes of a real ImageNet model: minutes on any CPU, so it is still running
# (and is stopped) when the other session queues. Its estimate must not ask for a click here.
LONG = (f"image?model={MODEL}&input=photo%3Achelsea&method=integrated_gradients"
        "&p.steps=1024&p.baseline=uniform&p.baseline_samples=64")
QUICK = f"image?model={MODEL}&input=photo%3Acoffee&method=gradient"
PROGRESS = '[data-testid="stMain"] [data-testid="stProgress"]'
SCRAPE_WAIT_S = 60


@pytest.fixture(scope="module")
def queue_server():
    """The app with one job at a time, runs keeping their slot to the end, and metrics on a
    port of their own; yields (app URL, metrics URL)."""
    with served(turn_s="1000000", log_name="queue_server.log") as urls:
        yield urls


@pytest.fixture(scope="module")
def turns_server():
    """The same with the default turns: a long run steps aside for other sessions."""
    with served(turn_s=None, log_name="turns_server.log") as urls:
        yield urls


@contextlib.contextmanager
def served(turn_s: str | None, log_name: str):
    metrics_port = free_port()
    env = {
        "SALIENCY_CACHE": str(REPO_ROOT / "models_cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "SALIENCY_SHARE_DIR": str(OUTPUT_DIR / "share_store"),
        "SALIENCY_CONCURRENCY": "1",
        "SALIENCY_METRICS_PORT": str(metrics_port),
        "SALIENCY_METRICS_ADDRESS": "127.0.0.1",
        "SALIENCY_REQUEST_BUDGET_S": "1000000",
        **({"SALIENCY_TURN_S": turn_s} if turn_s is not None else {}),
    }
    with serve_streamlit("app.py", cwd=REPO_ROOT, log_path=OUTPUT_DIR / log_name,
                         env=env) as base_url:
        yield base_url, f"http://127.0.0.1:{metrics_port}/metrics"


def gauge(metrics_url: str, name: str) -> float | None:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    found = re.search(rf'^{name}{{device="cpu"}} ([0-9.e+-]+)$', text, re.MULTILINE)
    return float(found[1]) if found else None


def until_gauge(metrics_url: str, name: str, value: float) -> None:
    """Wait (not time) until the server reports ``value``; fail with what it reported."""
    deadline = time.monotonic() + SCRAPE_WAIT_S
    seen = gauge(metrics_url, name)
    while seen != value and time.monotonic() < deadline:
        time.sleep(0.25)
        seen = gauge(metrics_url, name)
    assert seen == value, f"{name} is {seen}, expected {value}"


def stop(page) -> None:
    page.locator('[data-testid="stMain"]').get_by_role("button", name="Stop", exact=True).click()


def test_queued_request_shows_its_place_and_wait_and_stop_takes_it_out(queue_server, browser,
                                                                       page):
    from playwright.sync_api import expect

    base_url, metrics_url = queue_server
    page.goto(app_url(base_url, LONG), wait_until="domcontentloaded")
    # The long run has the model: its bar counts passes (after the model's first timing).
    expect(page.locator(PROGRESS)).to_contain_text(" model passes done",
                                                   timeout=APP_RUN_TIMEOUT_MS)
    until_gauge(metrics_url, "saliency_running_jobs", 1.0)

    other = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    try:
        waiting = other.new_page()
        waiting.goto(app_url(base_url, QUICK), wait_until="domcontentloaded")
        bar = waiting.locator(PROGRESS)
        expect(bar).to_contain_text("waiting for the model, next in line (position 1 of 1 in "
                                    "the queue), about ", timeout=APP_RUN_TIMEOUT_MS)
        assert re.search(r"about \d+ s to wait", bar.inner_text()), bar.inner_text()
        until_gauge(metrics_url, "saliency_queue_length", 1.0)

        stop(waiting)
        expect(waiting.get_by_text("Stopped before it finished")).to_be_visible(
            timeout=APP_RUN_TIMEOUT_MS)
        wait_for_app(waiting)
        assert_no_exception(waiting)
        # Out of the queue, while the long run keeps the model.
        until_gauge(metrics_url, "saliency_queue_length", 0.0)
        assert gauge(metrics_url, "saliency_running_jobs") == 1.0
        expect(page.locator(PROGRESS)).to_contain_text(" model passes done")
    finally:
        other.close()

    stop(page)
    expect(page.get_by_text("Stopped before it finished")).to_be_visible(
        timeout=APP_RUN_TIMEOUT_MS)
    until_gauge(metrics_url, "saliency_running_jobs", 0.0)
    assert_no_exception(page)
    log = (OUTPUT_DIR / "queue_server.log").read_text()
    assert '"outcome":"stopped"' in log and '"method":"gradient"' in log


def test_a_long_run_steps_aside_for_another_session_and_goes_on(turns_server, browser, page):
    from playwright.sync_api import expect

    base_url, metrics_url = turns_server
    page.goto(app_url(base_url, LONG), wait_until="domcontentloaded")
    bar = page.locator(PROGRESS)
    expect(bar).to_contain_text(" model passes done", timeout=APP_RUN_TIMEOUT_MS)

    other = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    try:
        quick = other.new_page()
        quick.goto(app_url(base_url, QUICK), wait_until="domcontentloaded")
        # The quick request's map is shown while the long run (minutes) has not finished:
        # it stepped aside between two chunks (its bar says "paused" for a moment).
        overlay = quick.locator('[data-testid="stMain"] [data-testid="stImage"]').filter(
            has_text="Overlay")
        expect(overlay.first).to_be_visible(timeout=APP_RUN_TIMEOUT_MS)
        wait_for_app(quick)
        assert_no_exception(quick)
        assert gauge(metrics_url, "saliency_running_jobs") == 1.0
        expect(bar).to_contain_text(" model passes done")
    finally:
        other.close()
    stop(page)
    expect(page.get_by_text("Stopped before it finished")).to_be_visible(
        timeout=APP_RUN_TIMEOUT_MS)
    assert_no_exception(page)
