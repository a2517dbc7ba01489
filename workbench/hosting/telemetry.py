"""What a served workbench tells its operators: one JSON log line per model request, and
Prometheus metrics on a port of their own (``SALIENCY_METRICS_PORT``; off when unset).

The log line has the anonymous session id, the user when signed in, model, method, passes,
queue wait, compute time and the outcome (ok, cached, coalesced, error, stopped, over_budget,
refused, rate_limited). Metrics: requests by outcome, queue length and running jobs per device,
histograms of queue wait and compute time, GPU memory when there is a GPU, and the sessions
connected and kept for a reconnect (workbench/hosting/reaper.py).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import torch
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

METRICS_PORT_ENV = "SALIENCY_METRICS_PORT"
LOG = logging.getLogger("saliency_workbench.requests")
if not LOG.handlers:  # Streamlit configures only its own loggers; this one is ours, on stderr
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(message)s"))
    LOG.addHandler(_handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False

_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


def _metric(kind, name, doc, labels=(), **kwargs):
    """The metric of that name, created once per process (pages re-import modules)."""
    existing = REGISTRY._names_to_collectors.get(name)
    if existing is not None:
        return existing
    return kind(name, doc, labels, **kwargs)


REQUESTS = _metric(Counter, "saliency_requests", "Model requests by outcome",
                   ("outcome", "model", "method"))
QUEUE_LENGTH = _metric(Gauge, "saliency_queue_length", "Jobs waiting in the queue", ("device",))
RUNNING = _metric(Gauge, "saliency_running_jobs", "Jobs running now", ("device",))
QUEUE_WAIT = _metric(Histogram, "saliency_queue_wait_seconds", "Time a request waited to start",
                     ("device",), buckets=_SECONDS)
COMPUTE = _metric(Histogram, "saliency_compute_seconds", "Time a request computed",
                  ("device", "model"), buckets=_SECONDS)
GPU_MEMORY = _metric(Gauge, "saliency_gpu_memory_bytes", "GPU memory allocated by PyTorch",
                     ("device",))
GPU_MEMORY_RESERVED = _metric(Gauge, "saliency_gpu_memory_reserved_bytes",
                              "GPU memory reserved by PyTorch's allocator", ("device",))
# Set by workbench/hosting/reaper.py every couple of seconds; both at 0: idle, and memory trimmed.
SESSIONS_CONNECTED = _metric(Gauge, "saliency_sessions_connected",
                             "Browser sessions connected now")
SESSIONS_STORED = _metric(Gauge, "saliency_sessions_stored",
                          "Sessions of closed tabs kept for a reconnect (NaN: not known)")
SESSIONS_RELEASED = _metric(Counter, "saliency_sessions_released",
                            "Sessions of closed tabs shut down after their reconnect time")
MEMORY_TRIMS = _metric(Counter, "saliency_memory_trims",
                       "Garbage collections and malloc_trim(0) run once the server was idle")
# Read when scraped: what the process keeps on purpose, within its byte budgets (an idle
# server's memory beyond these and the models' is what the sessions left behind).
RESULT_CACHE_BYTES = _metric(Gauge, "saliency_result_cache_bytes",
                             "Bytes of results in this process's result cache")
MODEL_POOL_BYTES = _metric(Gauge, "saliency_model_pool_bytes",
                           "Bytes of the models loaded in this process's model pool")

_server_lock = threading.Lock()
_server_port: int | None = None


def start_metrics_server() -> int | None:
    """Serve /metrics on SALIENCY_METRICS_PORT once per process; the port, or None if off."""
    global _server_port
    raw = os.environ.get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return None
    with _server_lock:
        if _server_port is None:
            # A scraper reaches the metrics from outside the host; the operator narrows it here.
            addr = os.environ.get("SALIENCY_METRICS_ADDRESS", "0.0.0.0")  # nosec B104
            try:
                start_http_server(int(raw), addr=addr)
            except (OSError, ValueError) as exc:  # a busy port must not take the app down
                LOG.warning(json.dumps({"event": "metrics_unavailable", "port": raw,
                                        "error": str(exc)}))
                return None
            _server_port = int(raw)
    return _server_port


def sample_gpu_memory() -> None:
    if not torch.cuda.is_available():
        return
    for index in range(torch.cuda.device_count()):
        device = f"cuda:{index}"
        GPU_MEMORY.labels(device).set(torch.cuda.memory_allocated(index))
        GPU_MEMORY_RESERVED.labels(device).set(torch.cuda.memory_reserved(index))


def record_request(*, session: str, user: str | None, page: str, model: str, method: str,
                   device: str, passes: int, queue_wait_s: float, compute_s: float,
                   outcome: str, estimate_s: float | None = None, batch: int = 1,
                   detail: str = "") -> dict:
    """One JSON line in the log and the matching metrics; returns the record."""
    record = {
        "ts": round(time.time(), 3), "event": "request", "session": session, "user": user,
        "page": page, "model": model, "method": method, "device": device, "passes": passes,
        "queue_wait_s": round(queue_wait_s, 4), "compute_s": round(compute_s, 4),
        "outcome": outcome, "estimate_s": None if estimate_s is None else round(estimate_s, 3),
        "batch": batch,
    }  # fmt: skip
    if detail:
        record["detail"] = detail[:300]
    LOG.info(json.dumps(record, separators=(",", ":")))
    REQUESTS.labels(outcome, model, method).inc()
    if outcome in ("ok", "coalesced"):
        QUEUE_WAIT.labels(device).observe(queue_wait_s)
        COMPUTE.labels(device, model).observe(compute_s)
    sample_gpu_memory()
    return record


def update_queue(device: str, queued: int, running: int) -> None:
    QUEUE_LENGTH.labels(device).set(queued)
    RUNNING.labels(device).set(running)
