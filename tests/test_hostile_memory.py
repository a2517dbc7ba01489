"""Memory returns to its level after large inputs: nothing is kept per upload.

The server's resident memory is read from /proc after a warm-up (the default photo model
loaded, one large upload explained) and again after a run of large uploads, each one new (a
12-megapixel JPEG of noise, decoded at a reduced size while it is read, and a 23.5-megapixel
single-colour PNG of about a hundred kB, the largest the app accepts, in the shape of a
decompression bomb).
Growth past 10 % of the warm level means something is kept per upload. ``make test`` runs
four uploads; ``make hostile`` (HOSTILE_FULL=1) twenty.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from browser import (
    assert_no_exception,
    health_ok,
    open_app,
    replace_upload,
    wait_for_app,
)
from PIL import Image

pytestmark = pytest.mark.browser

UPLOADS = 20 if os.environ.get("HOSTILE_FULL") == "1" else 4
SIDEBAR = '[data-testid="stSidebar"]'
GROWTH_LIMIT = 0.10


def server_pid(base_url: str) -> int:
    """The streamlit process listening on the URL's port (the fixture keeps only the URL)."""
    wanted = ["--server.port", str(urlparse(base_url).port)]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "streamlit" in " ".join(args) and any(args[i:i + 2] == wanted for i in range(len(args))):
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


def test_memory_returns_to_its_level_after_large_uploads(app_server, page):
    pid = server_pid(app_server)
    open_app(page, app_server, "image?method=gradient")
    page.locator(SIDEBAR).get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    uploader = page.locator(f'{SIDEBAR} [data-testid="stFileUploader"]')
    shown = page.locator('[data-testid="stMain"]').get_by_text("Input as the model sees it")

    def explain(i: int) -> None:
        replace_upload(page, uploader, *large_upload(i))
        assert_no_exception(page)
        assert shown.count() >= 1, f"upload {i} was not explained"

    for i in range(2):  # warm-up: model, allocator pools and Streamlit's own caches
        explain(1000 + i)
    warm = rss_mb(pid)
    levels = []
    for i in range(UPLOADS):
        explain(i)
        levels.append(round(rss_mb(pid)))
    assert health_ok(app_server)
    print(f"memory: warm {warm:.0f} MB, after each upload {levels} MB")  # shown with -s
    growth = (rss_mb(pid) - warm) / warm
    assert growth < GROWTH_LIMIT, f"warm {warm:.0f} MB, then per upload {levels} MB"
