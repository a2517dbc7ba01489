"""Helpers for browser tests: open a page of the running app, wait until Streamlit has finished
running its script, fail on exception boxes, keep screenshots.

Fixtures (``app_server``, ``browser``, ``page``) live in conftest.py; tests import these helpers
with ``from browser import open_app, wait_for_app, assert_no_exception, screenshot``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO_ROOT / "tests" / "output"
SCREENSHOT_DIR = OUTPUT_DIR / "screenshots"
# Debian's chromium; CHROMIUM overrides it (as it does for `make test`).
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

HEALTH_TIMEOUT_S = 60
# Generous: the first run of a page imports torch and may load a model on 2 busy cores.
APP_RUN_TIMEOUT_MS = 120_000

_APP = '[data-testid="stApp"]'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, n: int = 60) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


@contextlib.contextmanager
def serve_streamlit(
    script: str | Path,
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    health_timeout_s: float = HEALTH_TIMEOUT_S,
    extra_args: Sequence[str] = (),
    port: int | None = None,
    launcher: Sequence[str] = ("-m", "streamlit"),
) -> Iterator[str]:
    """Run ``streamlit run script`` on a free localhost port (or ``port``) until the block
    ends; yields the base URL once /_stcore/health answers 200. Output goes to ``log_path``;
    ``extra_args`` are more ``streamlit run`` options (e.g. ``--secrets.files``);
    ``launcher=("-m", "workbench.serve")`` serves it as ``make run`` does (same arguments)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, *launcher, "run", str(script),
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        *extra_args,
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + health_timeout_s
            while not health_ok(base_url):
                if process.poll() is not None:
                    pytest.fail(
                        f"streamlit exited with code {process.returncode} before serving "
                        f"{script}:\n{_tail(log_path)}",
                        pytrace=False,
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{base_url}/_stcore/health not 200 after {health_timeout_s:.0f}s "
                        f"serving {script}:\n{_tail(log_path)}",
                        pytrace=False,
                    )
                time.sleep(0.25)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def app_url(base_url: str, path: str = "") -> str:
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def wait_for_app(page, timeout_ms: int = APP_RUN_TIMEOUT_MS, settle_ms: int = 150) -> None:
    """Block until the app is connected and its script run (and any rerun) is over.

    After a click or a widget change Streamlit needs a moment before it reports the rerun;
    ``settle_ms`` keeps us from seeing the previous, already finished run.
    """
    page.wait_for_selector(f'{_APP}[data-test-connection-state="CONNECTED"]', timeout=timeout_ms)
    if settle_ms:
        page.wait_for_timeout(settle_ms)
    page.wait_for_selector(f'{_APP}[data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="hidden", timeout=timeout_ms)


def open_app(page, base_url: str, path: str = "", timeout_ms: int = APP_RUN_TIMEOUT_MS) -> None:
    """Navigate to ``path`` of the app (e.g. "" for home, "explain" for a page) and wait for it."""
    page.goto(app_url(base_url, path), wait_until="domcontentloaded", timeout=timeout_ms)
    wait_for_app(page, timeout_ms=timeout_ms)


# The app's error boundary (workbench/ui/boundary.py) shows this instead of a traceback.
BOUNDARY_TEXT = "Something went wrong on the server"


def exception_texts(page) -> list[str]:
    """Streamlit's exception boxes and the app's error-boundary messages on the page."""
    boxes = page.locator('[data-testid="stException"]')
    texts = [boxes.nth(i).inner_text() for i in range(boxes.count())]
    alerts = page.locator('[data-testid="stAlert"]', has_text=BOUNDARY_TEXT)
    return texts + [alerts.nth(i).inner_text() for i in range(alerts.count())]


def assert_no_exception(page) -> None:
    """Fail with the shown traceback(s) when the page displays a Streamlit exception box."""
    texts = exception_texts(page)
    if texts:
        pytest.fail(
            f"the app shows {len(texts)} exception box(es):\n\n" + "\n\n---\n\n".join(texts),
            pytrace=False,
        )


def screenshot(page, name: str, full_page: bool = True) -> Path:
    """Save a PNG under tests/output/screenshots/ (git-ignored) and return its path."""
    if not name.endswith(".png"):
        name += ".png"
    path = SCREENSHOT_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path


def keep_copy(path: Path, folder: Path) -> None:
    """Copy a screenshot to ``folder`` too (where a person reviewing a page looks at them);
    a read-only or missing place leaves the copy under tests/output/ alone."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    except OSError:
        pass


def replace_upload(page, scope, name: str, mime: str, data: bytes) -> None:
    """Replace whatever the uploader ``scope`` (a locator) holds with one file, and wait until
    it is accepted or refused and the app's run that follows is over."""
    from playwright.sync_api import expect

    chips = scope.locator("[data-testid='stFileChip']")
    while chips.count():
        chips.first.locator("[data-testid='stFileChipDeleteBtn']").first.click()
        expect(chips).to_have_count(0, timeout=APP_RUN_TIMEOUT_MS)
    scope.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        {"name": name, "mimeType": mime, "buffer": data})
    # Playwright's 5 s default is too short for the chip of a 10 MB upload to a busy server.
    expect(chips).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    expect(scope.locator("[data-testid='stFileChipIconSpinner']")).to_have_count(
        0, timeout=60_000)
    wait_for_app(page, settle_ms=400)



SHARE_BUTTON = "button.sw-share-link"


def share_link(page) -> str:
    """The link the page's "Share this view" button copies (the current one: the button is
    drawn again whenever the view changes)."""
    return page.locator(SHARE_BUTTON).last.get_attribute("data-link")
