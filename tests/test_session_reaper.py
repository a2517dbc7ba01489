"""A closed tab's session is shut down when its reconnect time is over (workbench/reaper.py).

Streamlit 1.67 drops an expired stored session without shutting it down, so the files it
uploaded and the pictures it was shown stayed in the server's memory for good. The quick tests
take over the session store of a real WebsocketSessionManager (they fail when Streamlit's
internals change under the reaper); the browser test serves the app as ``make run`` does with a
two-second reconnect time, uploads a photo, closes the tab and waits until the gauges say the
server is idle, then asks for the session's picture, which Streamlit must have let go.
"""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from collections import deque

import pytest
from browser import (
    OUTPUT_DIR,
    REPO_ROOT,
    free_port,
    open_app,
    replace_upload,
    serve_streamlit,
)
from conftest import app_env
from PIL import Image
from streamlit.runtime.memory_session_storage import MemorySessionStorage
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.runtime.session_manager import SessionInfo
from streamlit.runtime.websocket_session_manager import WebsocketSessionManager

from workbench import reaper

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
            if line.startswith(("saliency_sessions", "saliency_memory"))}


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.browser
def test_a_closed_tab_is_shut_down_and_its_picture_let_go(browser):
    metrics_port = free_port()
    env = {**app_env(), "SALIENCY_METRICS_PORT": str(metrics_port),
           "SALIENCY_METRICS_ADDRESS": "127.0.0.1", "SALIENCY_WARM_MODELS": "shapes-cnn"}
    log_path = OUTPUT_DIR / "session_reaper_server.log"
    with serve_streamlit("app.py", cwd=REPO_ROOT, log_path=log_path, env=env,
                         launcher=("-m", "workbench.serve"),
                         extra_args=["--server.disconnectedSessionTTL", "2"]) as base_url:
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(60_000)
        page = context.new_page()
        open_app(page, base_url, "image?model=shapes-cnn&method=gradient")
        page.locator(SIDEBAR).get_by_text("Upload", exact=True).click()
        buffer = io.BytesIO()
        Image.new("RGB", (96, 96), (200, 40, 90)).save(buffer, "PNG")
        replace_upload(page, page.locator(f'{SIDEBAR} [data-testid="stFileUploader"]'),
                       "reaped.png", "image/png", buffer.getvalue())
        picture = page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first
        src = picture.get_attribute("src")
        assert src and "/media/" in src, f"no served picture on the page: {src!r}"
        media_url = src if src.startswith("http") else base_url + src
        assert _status(media_url) == 200
        context.close()

        deadline = time.monotonic() + IDLE_WAIT_S
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            seen = _metrics(metrics_port)
            if (seen.get("saliency_sessions_connected") == 0
                    and seen.get("saliency_sessions_stored") == 0
                    and seen.get("saliency_sessions_released_total", 0) >= 1):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the closed tab's session was not released: {seen}\n"
                        + log_path.read_text(errors="replace")[-3000:])
        assert seen["saliency_memory_trims_total"] >= 1
        assert _status(media_url) == 404, "the closed session's picture is still served"
    assert "left to Streamlit" not in log_path.read_text(errors="replace")
