"""The load test runs: `python -m benchmarks.load --smoke` starts the hosted configuration,
drives two concurrent sessions through every action (then again beside a heavy-link session),
samples the server's memory and reports it all with 0 errors and 0 tracebacks. Timings are
the benchmark's business (`make load`), not this test's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.browser import REPO_ROOT

pytestmark = pytest.mark.browser

ACTIONS = {"open the Image page", "upload a photo: first overlay", "upload a photo: final map",
           "display-only change (opacity)", "method change", "open a shared link",
           "open Compare: first map", "open Compare: all five maps"}
TARGETS = 4


def test_smoke_run_reports_every_action_without_errors(tmp_path):
    out = tmp_path / "load.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.load", "--smoke", "--json", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == [] and result["page_exceptions"] == []
    assert result["server_tracebacks"] == [] and result["tracebacks"] == 0
    for phase in ("baseline", "heavy"):
        rows = {row["action"]: row for row in result["phases"][phase]}
        assert set(rows) == ACTIONS, phase
        assert all(row["n"] >= 2 for row in rows.values()), phase  # both sessions, each action
    assert result["config"]["sessions"] == 2
    assert result["config"]["server"].startswith("python -m workbench.serve hosted")
    heavy = result["heavy_session"]
    assert heavy and all(run["steps"] <= 1024 for run in heavy)
    # A finished heavy link ran the link's steps, not the page's default 50.
    assert all(run["passes"] >= run["steps"] for run in heavy if run["outcome"] == "finished")
    assert result["ratio"]["overall"] is not None
    assert set(result["ratio"]["per_action"]) == ACTIONS
    memory = result["memory"]
    assert set(memory["idle_mb"]) == {"baseline", "heavy"}
    assert memory["warm_mb"] > 0 and memory["end_mb"] > 0 and memory["max_mb"] > 0
    assert memory["growth_pct"] is not None
    # Each idle level was read from the server's own gauges (the real metrics port), not a pause.
    for phase in ("baseline", "heavy"):
        level = memory["idle"][phase]
        assert {"saliency_running_jobs", "saliency_queue_length", "saliency_sessions_connected",
                "saliency_sessions_stored"} <= set(level["gauges"]), level
        # What the idle server holds on purpose: results computed, models loaded.
        assert level["gauges"]["saliency_result_cache_bytes"] > 0, level
        assert level["gauges"]["saliency_model_pool_bytes"] > 0, level
        assert level["mb"] == memory["idle_mb"][phase] and level["waited_s"] >= 2
        assert level["idle"] or level["why_not"]
    assert result["config"]["browser_nice"] == 10
    assert len(memory["samples"]) >= 3
    assert result["machine"]["cores"] >= 1 and len(result["machine"]["load_before"]) == 3
    assert [t["pass"] for t in result["targets"][:2]] == [True, True]
    assert len(result["targets"]) == TARGETS
    for line in ("| **all actions** |", "| open a shared link |", "Targets:", "PASS: 0 errors",
                 "Server memory (RSS):", "Heavy session (Integrated Gradients"):
        assert line in done.stdout, line
