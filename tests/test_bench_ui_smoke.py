"""The browser latency benchmark runs: `python -m benchmarks.ui --smoke` against the browser
tests' server times a first view, a first map and a display change in chromium and reports
each one (`make bench` also starts its own warm server and adds uploads, method changes, IG
steps and Compare; its server start is tested below without a browser)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.browser import REPO_ROOT

pytestmark = pytest.mark.browser

ACTIONS = {"first page view (Home)", "Image page opened: first overlay",
           "Image page opened: final map", "display-only change (opacity widget)",
           "display-only change (colormap menu)"}


def test_smoke_run_times_every_action(tmp_path, app_server):
    out = tmp_path / "ui.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.ui", "--smoke", "--json", str(out),
                           "--url", app_server],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {row["action"]: row for row in result["rows"]}
    assert set(rows) == ACTIONS
    assert all(0 < row["median_ms"] <= row["p95_ms"] for row in rows.values())
    # The page opened on the bundled model: its final map comes no sooner than its first one.
    assert rows["Image page opened: final map"]["median_ms"] >= \
        rows["Image page opened: first overlay"]["median_ms"]
    assert "| display-only change (opacity widget) |" in done.stdout
    assert "| display-only change (colormap menu) |" in done.stdout
