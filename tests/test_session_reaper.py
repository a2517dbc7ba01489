"""A closed tab's session is shut down when its reconnect time is over (workbench/hosting/reaper.py).

Streamlit 1.67 removes an expired stored session only when the next tab closes and leaves its
shutdown to the garbage collector, so the files it uploaded and the pictures it was shown stayed
in the server's memory long after (on a quiet server, until someone else left). The quick tests
take over the session store of a real WebsocketSessionManager (they fail when Streamlit's
internals change under the reaper). The browser tests serve the app as ``make run`` does with a
two-second reconnect time: one uploads a photo, closes the tab and waits until the gauges say
the server is idle, then asks for the session's picture, which Streamlit must have let go; one
closes the tab of a long Integrated Gradients run and waits for the queue's gauge to say that
nothing runs any more (the run would take many minutes; the request's log line says stopped).
"""

from __future__ import annotations

import io
import re
import time
import urllib.error
import urllib.request
from collections import deque

import pytest
from conftest import app_env
from PIL import Image
from streamlit.runtime.memory_session_storage import MemorySessionStorage
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.runtime.session_manager import SessionInfo
from streamlit.runtime.websocket_session_manager import WebsocketSessionManager
from support.browser import (
    OUTPUT_DIR,
    REPO_ROOT,
    free_port,
    open_app,
    replace_upload,
    serve_streamlit,
)

from workbench.hosting import reaper

SIDEBAR = '[data-testid="stSidebar"]'
IDLE_WAIT_S = 90  # the reaper's round is 2 s; a loaded 2-core machine is slow to close a tab


def test_the_reaper_takes_over_streamlits_session_store():
    storage = MemorySessionStorage(maxsize=7, ttl_seconds=30)
    manager = WebsocketSessionManager(storage, MemoryUploadedFileManager("/upload"),
                                      ScriptCache(), None)
    assert reaper.take_over_storage(manager, deque()) is None
    cache = storage._cache
    assert type(cache).__name__ == "ReleasingCache"
    assert (cache.maxsize, cache.ttl) == (7, 30)


def test_expired_and_evicted_sessions_are_released():
    now = [0.0]
    released: deque = deque()
    cache = reaper.make_releasing_cache(2, 10, released, timer=lambda: now[0])
    for name in ("a", "b", "c"):  # the third evicts the least recently used
        cache[name] = SessionInfo(client=None, session=name)
    assert list(released) == ["a"]
    now[0] = 11
    assert len(cache) == 0  # len() expires (TTLCache's contract)
    assert sorted(released) == ["a", "b", "c"]


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line.startswith(("saliency_sessions", "saliency_memory", "saliency_running"))}


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def reaping_server():
    """The app as ``make run`` serves it, closed tabs kept 2 s; yields (URL, metrics port, log)."""
    metrics_port = free_port()
    env = {**app_env(), "SALIENCY_METRICS_PORT": str(metrics_port),
           "SALIENCY_METRICS_ADDRESS": "127.0.0.1", "SALIENCY_WARM_MODELS": "shapes-cnn",
           "SALIENCY_REQUEST_BUDGET_S": "1000000"}  # the long run must not ask for a click
    log_path = OUTPUT_DIR / "session_reaper_server.log"
    with serve_streamlit("app.py", cwd=REPO_ROOT, log_path=log_path, env=env,
                         launcher=("-m", "workbench.serve"),
                         extra_args=["--server.disconnectedSessionTTL", "2"]) as base_url:
        yield base_url, metrics_port, log_path
    assert "left to Streamlit" not in log_path.read_text(errors="replace")


def _wait_for(metrics_port: int, log_path, ready, what: str) -> dict[str, float]:
    deadline = time.monotonic() + IDLE_WAIT_S
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = _metrics(metrics_port)
        if ready(seen):
            return seen
        time.sleep(0.5)
    pytest.fail(f"{what}: {seen}\n" + log_path.read_text(errors="replace")[-3000:])


def _idle(seen: dict[str, float]) -> bool:
    return (seen.get("saliency_sessions_connected") == 0
            and seen.get("saliency_sessions_stored") == 0)


def _new_page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(60_000)
    return context, context.new_page()


@pytest.mark.browser
def test_a_closed_tab_is_shut_down_and_its_picture_let_go(reaping_server, browser):
    base_url, metrics_port, log_path = reaping_server
    released = _metrics(metrics_port).get("saliency_sessions_released_total", 0)
    context, page = _new_page(browser)
    open_app(page, base_url, "image?model=shapes-cnn&method=gradient")
    page.locator(SIDEBAR).get_by_text("Upload", exact=True).click()
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 40, 90)).save(buffer, "PNG")
    replace_upload(page, page.locator(f'{SIDEBAR} [data-testid="stFileUploader"]'),
                   "reaped.png", "image/png", buffer.getvalue())
    images = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
    sources = [images.nth(i).get_attribute("src") or "" for i in range(images.count())]
    served = [src for src in sources if "/media/" in src]  # some travel inline (data: URIs)
    assert served, f"no picture served from Streamlit's media store: {sources!r}"
    media_url = served[0] if served[0].startswith("http") else base_url + served[0]
    assert _status(media_url) == 200
    context.close()

    seen = _wait_for(metrics_port, log_path, lambda m: _idle(m) and m.get(
        "saliency_sessions_released_total", 0) > released, "the closed tab was not released")
    assert seen["saliency_memory_trims_total"] >= 1
    assert _status(media_url) == 404, "the closed session's picture is still served"


# Tens of thousands of passes of a real ImageNet model: far longer than the wait below.
LONG = ("image?model=efficientnet-lite0&input=photo%3Achelsea&method=integrated_gradients"
        "&p.steps=1024&p.baseline=uniform&p.baseline_samples=64")
RUNNING = 'saliency_running_jobs{device="cpu"}'


@pytest.mark.browser
def test_a_closed_tabs_running_job_stops(reaping_server, browser):
    base_url, metrics_port, log_path = reaping_server
    context, page = _new_page(browser)
    page.goto(f"{base_url}/{LONG}", wait_until="commit")
    page.get_by_text("model passes done").first.wait_for(timeout=120_000)
    assert _metrics(metrics_port).get(RUNNING) == 1
    context.close()

    _wait_for(metrics_port, log_path, lambda m: _idle(m) and m.get(RUNNING) == 0,
              "the closed tab's job still runs")
    outcomes = re.findall(r'"method":"integrated_gradients".*?"outcome":"(\w+)"',
                          log_path.read_text(errors="replace"))
    assert outcomes[-1:] == ["stopped"], outcomes
