"""Memory returns to its level after large inputs: nothing is kept per upload.

The server, started as ``make run`` starts it, has its resident memory read from /proc after a
warm-up (the default photo model loaded, large uploads explained until two in a row each add
under 2 %) and again after a run of large uploads, each one new (a 12-megapixel JPEG of noise,
decoded at a reduced size while it is read, and a 23.5-megapixel single-colour PNG of about a
hundred kB, the largest the app accepts, in the shape of a decompression bomb).
Growth past 10 % of the warm level means something is kept per upload (glibc's per-thread
malloc arenas, capped by workbench/serve.py, once looked like that). ``make test`` runs
four uploads; ``make hostile`` twenty (the test's ``full`` variant).
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image
from support.browser import (
    assert_no_exception,
    health_ok,
    open_app,
    replace_upload,
    wait_for_app,
)

pytestmark = pytest.mark.browser

UPLOADS = {"quick": 4, "full": 20}
SIDEBAR = '[data-testid="stSidebar"]'
GROWTH_LIMIT = 0.10
WARM_UPLOADS_MAX = 8
WARM_STEP = 0.02


def server_pid(base_url: str) -> int:
    """The server process listening on the URL's port (the fixture keeps only the URL)."""
    wanted = ["--server.port", str(urlparse(base_url).port)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "app.py" in args and any(args[i:i + 2] == wanted for i in range(len(args))):
            return int(proc.name)
    pytest.skip("the server's process is not visible in /proc")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def large_upload(i: int) -> tuple[str, str, bytes]:
    buffer = io.BytesIO()
    if i % 2 == 0:
        noise = np.random.default_rng(i).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
        Image.fromarray(noise).save(buffer, "JPEG", quality=80)
        return f"noise-{i}.jpg", "image/jpeg", buffer.getvalue()
    Image.new("RGB", (5600, 4200), (i * 37 % 256, 90, 160)).save(buffer, "PNG")
    return f"flat-{i}.png", "image/png", buffer.getvalue()


def test_memory_returns_to_its_level_after_large_uploads(make_run_server, page, strength):
    pid = server_pid(make_run_server)
    open_app(page, make_run_server, "image?method=gradient")
    page.locator(SIDEBAR).get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    uploader = page.locator(f'{SIDEBAR} [data-testid="stFileUploader"]')
    shown = page.locator('[data-testid="stMain"]').get_by_text("Input as the model sees it")

    def explain(i: int) -> None:
        replace_upload(page, uploader, *large_upload(i))
        assert_no_exception(page)
        assert shown.count() >= 1, f"upload {i} was not explained"

    # Warm-up: the model, Streamlit's caches and the allocator's arenas (one per thread that
    # decodes, glibc keeps what it had) grow to a level and stay there; a leak keeps growing.
    # The level is reached when two uploads in a row each add less than WARM_STEP (in CI, after
    # the other browser tests on the same server, two uploads once left RSS at 1309 MB and the
    # next two raised it to the 1565 MB it then kept). A leak of a decoded upload (70 MB) per
    # upload never looks settled and fails below.
    warm = rss_mb(pid)
    settled = 0
    for i in range(WARM_UPLOADS_MAX):
        explain(1000 + i)
        level, warm = warm, rss_mb(pid)
        settled = settled + 1 if warm - level < WARM_STEP * level else 0
        if settled == 2:
            break
    levels = []
    for i in range(UPLOADS[strength]):
        explain(i)
        levels.append(round(rss_mb(pid)))
    assert health_ok(make_run_server)
    print(f"memory: warm {warm:.0f} MB, after each upload {levels} MB")  # shown with -s
    growth = (rss_mb(pid) - warm) / warm
    assert growth < GROWTH_LIMIT, f"warm {warm:.0f} MB, then per upload {levels} MB"
