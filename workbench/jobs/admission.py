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
from dataclasses import dataclass, field
from typing import Any

from saliency_core.errors import SaliencyError
from saliency_core.harness.refine import REFINABLE
from saliency_core.methods import get as method_entry
from workbench.hosting import telemetry
from workbench.jobs.costs import (
    Budget,
    CostModel,
    Estimate,
    RateLimiter,
    estimate_passes,
    seconds_text,
)
from workbench.jobs.scheduler import QUANTUM_S, Job, Scheduler, Waiting
from workbench.jobs.shared import shared
from workbench.jobs.visitor import Visitor

CONCURRENCY_ENV = "SALIENCY_CONCURRENCY"
MAX_BATCH_ENV = "SALIENCY_MAX_BATCH"
TURN_ENV = "SALIENCY_TURN_S"
CONFIRMED_KEY = "_budget_confirmed"


class OverBudget(SaliencyError):
    """The estimate is above the per-request budget and the user has not confirmed it:
    ``confirm(visitor)`` lets the same request run on the next try. ``partial``: the coarse
    level (result, progressive.Level) a progressive run showed before asking, or None."""

    def __init__(self, message: str, key: Hashable, estimate_s: float,
                 estimate: Estimate | None = None, partial: tuple | None = None):
        super().__init__(message)
        self.key = key
        self.estimate_s = estimate_s
        self.estimate = estimate or Estimate(estimate_s, estimate_s, estimate_s)
        self.partial = partial

    def confirm(self, visitor_state) -> None:
        visitor_state.setdefault(CONFIRMED_KEY, set()).add(self.key)


class Refused(SaliencyError):
    """Above the hard limit, or over the user's rate limit. ``partial`` as for OverBudget."""

    def __init__(self, message: str, estimate: Estimate | None = None,
                 partial: tuple | None = None):
        super().__init__(message)
        self.estimate = estimate
        self.partial = partial


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
    # What the model reads: pixels after preprocessing for an image, tokens after truncation
    # for a text (workbench.jobs.costs).
    units: float = 1
    batch_key: Hashable | None = None
    # Runs real requests on a model the cost model has not seen on this device yet, and hands
    # their timings to the cost model (workbench.jobs.compute).
    calibrate: Callable[[CostModel], None] | None = None
    # Started by a button press of its own (sanity checks): that press is the explicit click
    # an over-budget request needs; only the hard limit still applies.
    explicit: bool = False
    params: dict = field(default_factory=dict)  # the method's settings: what advice may change
    task: str = "image"
    runs: int = 1  # engine runs it takes (the levels of a progressive run)


def _describe(request: Request, estimate: Estimate, spread: bool = True) -> str:
    passes = "model pass" if request.passes == 1 else "model passes"
    return (f"{request.passes:,} {passes} of {request.model} on {request.device}, "
            f"{estimate.text(spread)}")


def estimate(request: Request) -> Estimate | None:
    """What ``request`` will take, calibrating the model on its device first if nothing has
    run there yet (a few real requests, queued like any other work)."""
    costs = cost_model()
    if not costs.known(request.model, request.device) and request.calibrate is not None:
        calibrate = request.calibrate
        scheduler_for(request.device).run(Job(
            "calibration", ("calibrate", request.model, request.device), None,
            lambda payloads: [_measure(lambda: calibrate(costs))], cost_s=0.5))
    return costs.estimate(request.model, request.device, request.passes, request.units,
                          request.runs)


def _measure(calibrate: Callable[[], object]) -> object:
    from workbench.jobs.engine import measuring

    with measuring():
        return calibrate()


def advice(request: Request, seconds: float) -> str:
    """What to change so that ``request`` takes at most ``seconds``, and by how much: fewer
    steps or samples (the largest count that fits), else fewer tokens, else a smaller input or
    model."""
    costs = cost_model()

    def fits(passes: int, units: float) -> bool:
        est = costs.estimate(request.model, request.device, passes, units, request.runs)
        return est is not None and est.seconds <= seconds

    knob = REFINABLE.get(request.method)
    if knob is not None and request.params.get(knob):
        spec = next((p for p in method_entry(request.method).spec.params if p.name == knob),
                    None)
        least = int(spec.min) if spec is not None and spec.min is not None else 1
        best = _largest(least, int(request.params[knob]) - 1, lambda n: fits(
            estimate_passes(request.method, {**request.params, knob: n}, request.task),
            request.units))
        if best is not None:
            return f"use at most {best:,} {knob} (now {int(request.params[knob]):,})"
    if request.task == "text" and request.units > 8:
        best = _largest(4, int(request.units) - 1, lambda n: fits(request.passes, n))
        if best is not None:
            return (f"set 'Longest input' to at most {best:,} tokens (the text has "
                    f"{int(request.units):,})")
    return "use a cheaper method, a smaller model or a smaller input"


def _largest(low: int, high: int, ok: Callable[[int], bool]) -> int | None:
    """The largest n in [low, high] with ok(n), for ok true up to some n and false above."""
    if high < low or not ok(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if ok(middle) else (low, middle - 1)
    return low


def _log_fields(visitor: Visitor, request: Request) -> dict:
    return {"session": visitor.session, "user": visitor.user, "page": request.page,
            "model": request.model, "method": request.method, "device": request.device,
            "passes": request.passes}


def over_limit_message(request: Request, est: Estimate, budget: Budget) -> str:
    return (f"Refused: these settings need {_describe(request, est)}, more than the limit per "
            f"request on this server ({budget.limit_s:.3g} s) even at the fast end. To stay "
            f"under it, {advice(request, budget.limit_s)}.")


def over_budget_message(request: Request, est: Estimate, budget: Budget) -> str:
    return (f"These settings need {_describe(request, est)}, more than the "
            f"{seconds_text(budget.budget_s)} budget per request on this server. To stay within "
            f"it, {advice(request, budget.budget_s)}; or press Run anyway to run them.")


def admit(visitor: Visitor, request: Request) -> Estimate | None:
    """Check ``request`` against the budget, the hard limit and the user's rate limit; raise
    OverBudget or Refused (logged) when it may not run now. Returns the estimate (None while
    nothing is measured for the model yet)."""
    log = _log_fields(visitor, request)
    est = estimate(request)
    budget = Budget.configured()
    verdict = "ok" if est is None else budget.verdict(est)
    confirmed = request.explicit or request.key in visitor.state.get(CONFIRMED_KEY, set())
    if verdict == "refused" and est is not None:
        telemetry.record_request(**log, queue_wait_s=0, compute_s=0, outcome="refused",
                                 estimate_s=est.seconds)
        raise Refused(over_limit_message(request, est, budget), est)
    if verdict == "confirm" and not confirmed and est is not None:
        telemetry.record_request(**log, queue_wait_s=0, compute_s=0, outcome="over_budget",
                                 estimate_s=est.seconds)
        raise OverBudget(over_budget_message(request, est, budget), request.key, est.seconds,
                         est)
    per_minute = RateLimiter.configured_per_minute()
    wait = rate_limiter().acquire(visitor.requester, per_minute)
    if wait > 0:
        telemetry.record_request(**log, queue_wait_s=0, compute_s=0, outcome="rate_limited",
                                 estimate_s=None if est is None else est.seconds)
        raise Refused(f"You started {per_minute} computations in the last minute, "
                      f"the most this server allows; try again in {wait:.0f} s.")
    return est


def submit(visitor: Visitor, request: Request, progress=None) -> Any:
    """Run ``request`` through the budget, the rate limit and the device's queue."""
    return schedule(visitor, request, admit(visitor, request), progress)


def _engine_timing(results) -> dict | None:
    """The engine's chunk timings of a run, from its first result's metadata (a batch of
    images shares one run)."""
    for result in results or ():
        timing = getattr(result, "metadata", {}).get("timing")
        if isinstance(timing, dict):
            return timing
        return None
    return None


def schedule(visitor: Visitor, request: Request, est: Estimate | float | None,
             progress=None) -> Any:
    """Queue an admitted request on its device and wait for its result (see scheduler); the
    engine's timings of the run teach the cost model."""
    sid = visitor.session
    log = _log_fields(visitor, request)
    scheduler = scheduler_for(request.device)
    timing: dict[str, Any] = {"queued": time.perf_counter(), "started": None, "compute": 0.0,
                              "batch": 1, "engine": None}
    est_s = est.seconds if isinstance(est, Estimate) else est

    def run_batch(payloads):
        begin = time.perf_counter()
        try:
            results = request.run_batch(payloads)
            timing["engine"] = _engine_timing(results)
            return results
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

    job = Job(sid, request.key, request.payload, run_batch, cost_s=est_s or 1.0,
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
        if started is not None and outcome == "ok" and compute > 0 and timing["engine"]:
            _learn(request, timing["batch"], timing["engine"], compute)
        telemetry.update_queue(request.device, scheduler.queue_length(), scheduler.running())
        telemetry.record_request(**log, queue_wait_s=queue_wait, compute_s=compute,
                                 outcome=outcome, estimate_s=est_s, batch=timing["batch"],
                                 detail=detail)


def _learn(request: Request, batch: int, engine_timing: dict, seconds: float) -> None:
    """Compare the run with what the fit said before it, then teach the fit the run."""
    costs = cost_model()
    before = costs.raw_estimate(request.model, request.device, request.passes * batch,
                                request.units)
    if before is not None:
        costs.observe_outcome(request.model, request.device, before, seconds)
    costs.observe_run(request.model, request.device, request.units, engine_timing, seconds,
                      request.task)
