"""The one door to model work for every page: rate limit, cost estimate and budget, the
device's queue, and a log line and metrics for every request.

``submit`` is what workbench.jobs.compute calls for each computation that missed the result
cache. It raises ``SaliencyError`` subclasses with a message fit for the page when a request
is refused, so pages that already show SaliencyError messages need no changes. Over the
budget it raises ``OverBudget`` with the estimate: the page offers "Run anyway"
(workbench.ui.progress), whose click is recorded in the visitor's state as a confirmation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from saliency_core.errors import SaliencyError
from workbench.hosting import telemetry
from workbench.jobs.costs import Budget, CostModel, RateLimiter
from workbench.jobs.scheduler import QUANTUM_S, Job, Scheduler, Waiting
from workbench.jobs.shared import shared
from workbench.jobs.visitor import Visitor

CONCURRENCY_ENV = "SALIENCY_CONCURRENCY"
MAX_BATCH_ENV = "SALIENCY_MAX_BATCH"
TURN_ENV = "SALIENCY_TURN_S"
CONFIRMED_KEY = "_budget_confirmed"


class OverBudget(SaliencyError):
    """The estimate is above the per-request budget and the user has not confirmed it:
    ``confirm(visitor)`` lets the same request run on the next try."""

    def __init__(self, message: str, key: Hashable, estimate_s: float):
        super().__init__(message)
        self.key = key
        self.estimate_s = estimate_s

    def confirm(self, visitor_state) -> None:
        visitor_state.setdefault(CONFIRMED_KEY, set()).add(self.key)


class Refused(SaliencyError):
    """Above the hard limit, or over the user's rate limit."""


def default_concurrency(device: str) -> int:
    raw = os.environ.get(CONCURRENCY_ENV, "")
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if device.startswith("cuda"):
        return 1  # one job owns the GPU; a second would only compete for memory and cores
    # Each job already uses every core through PyTorch's threads: run several only when there
    # are many cores to share.
    return max(1, (os.cpu_count() or 1) // 8)


def turnseconds_text() -> float:
    """How long a job runs before it lets other sessions' queued work go first."""
    try:
        value = float(os.environ.get(TURN_ENV, "") or QUANTUM_S)
    except ValueError:
        return QUANTUM_S
    return value if value >= 0 else QUANTUM_S


@shared
def scheduler_for(device: str) -> Scheduler:
    raw = os.environ.get(MAX_BATCH_ENV, "")
    return Scheduler(default_concurrency(device), max_batch=int(raw) if raw.isdigit() else 8,
                     quantum_s=turnseconds_text())


@shared
def cost_model() -> CostModel:
    return CostModel()


@shared
def rate_limiter() -> RateLimiter:
    return RateLimiter()


@dataclass
class Request:
    page: str
    model: str
    device: str
    method: str
    key: Hashable
    payload: Any
    run_batch: Callable[[Sequence[Any]], Sequence[Any]]
    passes: int
    units: int = 1  # input size in the cost model's unit: 1 per image, tokens for text
    batch_key: Hashable | None = None
    calibrate: Callable[[], float] | None = None  # seconds for one pass, measured now
    # Started by a button press of its own (sanity checks): that press is the explicit click
    # an over-budget request needs; only the hard limit still applies.
    explicit: bool = False


def seconds_text(value: float) -> str:
    return f"{value:.2g} s" if value < 10 else f"{value:.0f} s"


def _describe(request: Request, estimate_s: float) -> str:
    return (f"{request.passes} model passes of {request.model} on {request.device}, about "
            f"{seconds_text(estimate_s)}")


def estimate(request: Request) -> float | None:
    costs = cost_model()
    if not costs.known(request.model, request.device) and request.calibrate is not None:
        seconds = scheduler_for(request.device).run(Job(
            "calibration", ("calibrate", request.model, request.device), None,
            lambda payloads: [_measure(request.calibrate)], cost_s=0.5))
        costs.observe(request.model, request.device, 1, request.units, seconds)
    return costs.estimate(request.model, request.device, request.passes, request.units)


def _measure(calibrate: Callable[[], float]) -> float:
    from workbench.jobs.engine import measuring

    with measuring():
        return calibrate()


def _log_fields(visitor: Visitor, request: Request) -> dict:
    return {"session": visitor.session, "user": visitor.user, "page": request.page,
            "model": request.model, "method": request.method, "device": request.device,
            "passes": request.passes}


def admit(visitor: Visitor, request: Request) -> float | None:
    """Check ``request`` against the budget, the hard limit and the user's rate limit; raise
    OverBudget or Refused (logged) when it may not run now. Returns the estimate in seconds
    (None while nothing is measured for the model yet)."""
    log = _log_fields(visitor, request)
    est = estimate(request)
    budget = Budget.configured()
    verdict = "ok" if est is None else budget.verdict(est)
    confirmed = request.explicit or request.key in visitor.state.get(CONFIRMED_KEY, set())
    if verdict == "refused":
        telemetry.record_request(**log, queue_wait_s=0, compute_s=0, outcome="refused",
                                 estimate_s=est)
        raise Refused(f"Refused: these settings need {_describe(request, est)}; the limit per "
                      f"request on this server is {budget.limit_s:.3g} s. Use fewer steps or "
                      "samples, a smaller model or a shorter input.")
    if verdict == "confirm" and not confirmed:
        telemetry.record_request(**log, queue_wait_s=0, compute_s=0, outcome="over_budget",
                                 estimate_s=est)
        raise OverBudget(f"These settings need {_describe(request, est)}, more than the "
                         f"{seconds_text(budget.budget_s)} budget per request on this server. Lower the "
                         "steps or samples, or press Run anyway to run them.", request.key, est)
    per_minute = RateLimiter.configured_per_minute()
    wait = rate_limiter().acquire(visitor.requester, per_minute)
    if wait > 0:
        telemetry.record_request(**log, queue_wait_s=0, compute_s=0, outcome="rate_limited",
                                 estimate_s=est)
        raise Refused(f"You started {per_minute} computations in the last minute, "
                      f"the most this server allows; try again in {wait:.0f} s.")
    return est


def submit(visitor: Visitor, request: Request, progress=None) -> Any:
    """Run ``request`` through the budget, the rate limit and the device's queue."""
    return schedule(visitor, request, admit(visitor, request), progress)


def schedule(visitor: Visitor, request: Request, est: float | None, progress=None) -> Any:
    """Queue an admitted request on its device and wait for its result (see scheduler)."""
    sid = visitor.session
    log = _log_fields(visitor, request)
    scheduler = scheduler_for(request.device)
    timing = {"queued": time.perf_counter(), "started": None, "compute": 0.0, "batch": 1}

    def run_batch(payloads):
        begin = time.perf_counter()
        try:
            return request.run_batch(payloads)
        finally:
            # Without the time it stepped aside for other sessions (scheduler.yield_turn).
            timing["compute"] = time.perf_counter() - begin - job.paused_s
            timing["batch"] = len(payloads)

    def on_start():
        timing["started"] = time.perf_counter()
        # The gauges follow the queue when work starts, not only while someone waits.
        telemetry.update_queue(request.device, scheduler.queue_length(), scheduler.running())

    def on_wait(waiting: Waiting):
        telemetry.update_queue(request.device, waiting.queued, waiting.running)
        if progress is not None and hasattr(progress, "waiting"):
            progress.waiting(waiting)

    job = Job(sid, request.key, request.payload, run_batch, cost_s=est or 1.0,
              batch_key=request.batch_key)
    outcome, detail = "ok", ""
    try:
        result = scheduler.run(job, on_wait=on_wait, on_start=on_start)
        return result
    except SaliencyError as exc:
        outcome, detail = "error", str(exc)
        raise
    except Exception as exc:
        outcome, detail = "error", f"{type(exc).__name__}: {exc}"
        raise
    except BaseException:
        outcome = "stopped"
        raise
    finally:
        now = time.perf_counter()
        started = timing["started"]
        if started is None and outcome == "ok":
            outcome = "coalesced"  # another session's identical or batched job answered it
        queue_wait = (started or now) - timing["queued"]
        compute = timing["compute"] if started is not None else 0.0
        if started is not None and outcome == "ok" and compute > 0:
            cost_model().observe(request.model, request.device, request.passes * timing["batch"],
                                 request.units, compute)
        telemetry.update_queue(request.device, scheduler.queue_length(), scheduler.running())
        telemetry.record_request(**log, queue_wait_s=queue_wait, compute_s=compute,
                                 outcome=outcome, estimate_s=est, batch=timing["batch"],
                                 detail=detail)
