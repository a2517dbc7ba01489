"""The server's idle level for the load test's memory target (benchmarks/load.py).

During a phase the server's RSS swings by gigabytes within seconds (Compare's five maps come and
go), so growth is read between the phases, once the server is really idle: no job running or
queued (its Prometheus gauges), no session connected or kept for reconnection (where the server
exports those gauges), and the RSS steady. Twenty seconds after the browsers close is not that
on two loaded cores: a run abandoned by its browser may still be working, and Streamlit keeps a
closed session's state for ``server.disconnectedSessionTTL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Gauges that must read 0 before the level counts as idle; a gauge the server does not export
# is not waited for (an older server, or a setting without it).
BUSY_GAUGES = ("saliency_running_jobs", "saliency_queue_length",
               "saliency_sessions_connected", "saliency_sessions_stored")
# Read with them, to say what the idle level holds on purpose (bounded by byte budgets).
HELD_GAUGES = ("saliency_result_cache_bytes", "saliency_model_pool_bytes")
STEADY_SAMPLES = 5  # RSS readings, POLL_S apart, within STEADY_PCT of each other
STEADY_PCT = 1.0
POLL_S = 2.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def server_gauges(metrics_url: str | None) -> dict[str, float] | None:
    """The busy and held gauges, summed over their labels (devices); None if the metrics
    cannot be read."""
    if metrics_url is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in BUSY_GAUGES + HELD_GAUGES:
            values[family.name] = sum(s.value for s in family.samples)
    return values


def steady(readings: list[float]) -> bool:
    last = readings[-STEADY_SAMPLES:]
    return len(last) == STEADY_SAMPLES and (max(last) - min(last)) <= STEADY_PCT / 100 * max(last)


@dataclass
class IdleLevel:
    """What the wait ended with: the RSS, how long it took, and whether it was idle."""

    mb: float | None = None
    waited_s: float = 0.0
    idle: bool = False
    gauges: dict[str, float] = field(default_factory=dict)
    why_not: str = ""

    def as_dict(self) -> dict:
        return {"mb": self.mb, "waited_s": round(self.waited_s, 1), "idle": self.idle,
                "gauges": self.gauges, "why_not": self.why_not}


async def wait_idle(pid: int | None, metrics_url: str | None, min_s: float,
                    max_s: float) -> IdleLevel:
    """Wait at least ``min_s`` and then until the server is idle (gauges at 0, RSS steady), at
    most ``max_s``; the level is the last RSS reading, marked not idle on a time-out."""
    level = IdleLevel()
    if pid is None:
        return level
    start = time.monotonic()
    await asyncio.sleep(min_s)
    readings: list[float] = []
    while True:
        with contextlib.suppress(OSError, RuntimeError):
            readings.append(rss_mb(pid))
        gauges = server_gauges(metrics_url) or {}
        busy = {name: value for name, value in gauges.items() if name in BUSY_GAUGES and value}
        level.mb = readings[-1] if readings else None
        level.gauges, level.waited_s = gauges, time.monotonic() - start
        if not busy and steady(readings):
            level.idle = True
            return level
        if level.waited_s >= max_s:
            level.why_not = (f"still busy after {max_s:.0f} s: {busy}" if busy else
                             f"RSS not steady after {max_s:.0f} s: {readings[-STEADY_SAMPLES:]}")
            return level
        if busy:
            readings.clear()  # steady counts from the moment nothing is left to do
        await asyncio.sleep(POLL_S)
