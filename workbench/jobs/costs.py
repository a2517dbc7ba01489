"""What a request will cost before it runs, the per-request budget, and a per-user rate limit.

A request's time has the shape of the engine's work: a fixed part per request (preprocessing,
the forward passes that find the target, turning the result into arrays) plus, for each chunk
of points the engine pushes through the model, a fixed part per chunk and a part per point::

    seconds = runs x overhead(u) + chunks x per_chunk + passes x per_point(u)

per model and device, where ``u`` is what the model really reads (tokens after truncation,
pixels after preprocessing: a 48-megapixel photo costs what the model's 224 x 224 input
costs). The parts are learned from the engine's own timings of real runs (the chunk times it
reports in ``metadata["timing"]``), fitted robustly: Theil-Sen slopes and medians over the
recent chunks, so one slow run (a cold first pass, a turn paused for other sessions) moves
the estimate little, and a pass timed alone is never taken for a pass inside a batch. The
per-point cost is linear in ``u`` across the sizes seen in batches, so inputs much longer or
shorter than those learned from are scaled by the size model rather than by one ratio; a size
seen only in lone passes takes its per-point cost from that line, and a point on a smaller
input never costs more than one on a larger input (a size measured at a busy moment).

Before a model has run here, a cheap calibration (workbench.jobs.compute) runs a few real
requests at two batch sizes (and, for text, two lengths). Each finished request records how
far its estimate was off, which gives the spread shown with an estimate and a correction of
the central value.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from saliency_core.engine.stream import MAX_CHUNK
from saliency_core.methods import get as method_entry

BUDGET_ENV = "SALIENCY_REQUEST_BUDGET_S"
LIMIT_ENV = "SALIENCY_REQUEST_LIMIT_S"
RATE_ENV = "SALIENCY_RATE_PER_MINUTE"
DEFAULT_BUDGET_S = 30.0
DEFAULT_LIMIT_FACTOR = 10.0  # the hard limit, without an explicit setting: 10 budgets
DEFAULT_RATE_PER_MINUTE = 120
# How much of the past the fit reads: the server's load and clocks change.
RECENT_CHUNKS = 256
RECENT_RUNS = 64
RECENT_OUTCOMES = 20
# Until this many runs have been compared with their estimate, the spread is the prior's; the
# central value is corrected by their median only from OUTCOMES_FOR_CORRECTION on (a few noisy
# runs on a busy machine would only move it about).
OUTCOMES_FOR_SPREAD = 3
OUTCOMES_FOR_CORRECTION = 8
PRIOR_SPREAD = 2.0  # before that: between half and twice the estimate
# A busy shared machine adds up to about this much to any request (a thread pool waking up, a
# turn given to another process): how far off an estimate was is judged with it added to both
# sides, so a 0.02 s request that took 0.6 s does not widen the range of a 30 s one 30 times.
OUTCOME_SLACK_S = 0.5
# The narrowest spread ever claimed: timings on a shared server vary by this much run to run.
LEAST_SPREAD = 1.25
# Text: a pass costs a fixed part plus a part per token; until two lengths have been seen the
# fixed part is taken as this many tokens' worth (MiniLM on a CPU: about 20).
TEXT_FIXED_TOKENS = 20.0


def estimate_passes(method: str, params: dict, task: str = "image") -> int:
    """Model passes (forward + input backward per point) a method needs with these settings."""
    entry = method_entry(method)
    full = {**entry.spec.defaults(task), **{k: v for k, v in params.items() if v is not None}}
    if entry.wraps:
        # The settings that are not the wrapper's own are its base method's (its steps).
        own = {p.name for p in entry.spec.params}
        base = {k: v for k, v in params.items() if k not in own}
        return entry.passes(full) * estimate_passes(str(full["base"]), base, task)
    return entry.passes(full)


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def seconds_text(value: float) -> str:
    return f"{value:.2g} s" if value < 10 else f"{value:,.0f} s"


@dataclass(frozen=True)
class Estimate:
    """A request's expected seconds and the range it will most likely fall in."""

    seconds: float
    low: float
    high: float

    def text(self, spread: bool = True) -> str:
        """'about 20 s' or, with ``spread``, 'about 20 s (between 15 and 30 s)'."""
        about = f"about {seconds_text(self.seconds)}"
        if not spread:
            return about
        low, high = seconds_text(self.low), seconds_text(self.high)
        return f"{about} (between {low.removesuffix(' s')} and {high})"


@dataclass(frozen=True)
class Budget:
    budget_s: float  # above this a request needs an explicit click
    limit_s: float  # above this it is refused

    @classmethod
    def configured(cls) -> Budget:
        budget = _env_float(BUDGET_ENV, DEFAULT_BUDGET_S)
        return cls(budget, max(budget, _env_float(LIMIT_ENV, budget * DEFAULT_LIMIT_FACTOR)))

    def verdict(self, estimate: Estimate | float) -> str:
        """'refused' only when even the fast end of the estimate's range is over the limit (a
        refusal cannot be clicked through, so it needs to be sure); 'confirm' when the central
        estimate is over the budget (a question costs one click); else 'ok'."""
        if not isinstance(estimate, Estimate):
            estimate = Estimate(estimate, estimate, estimate)
        if estimate.low > self.limit_s:
            return "refused"
        if estimate.seconds > self.budget_s:
            return "confirm"
        return "ok"


def theil_sen(points: Iterable[tuple[float, float]]) -> tuple[float, float] | None:
    """(intercept, slope) of the line through ``points`` (x, y): the median of the pairwise
    slopes and the median intercept, so a minority of outliers does not move it; None without
    two distinct x."""
    pts = list(points)
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(pts)
              for x2, y2 in pts[i + 1:] if x2 != x1]
    if not slopes:
        return None
    slope = statistics.median(slopes)
    return statistics.median(y - slope * x for x, y in pts), slope


def weighted_median(pairs: list[tuple[float, float]]) -> float:
    """The value at half the total weight of (value, weight) pairs."""
    ordered = sorted(pairs)
    half = sum(w for _, w in ordered) / 2
    seen = 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= half:
            return value
    return ordered[-1][0]


@dataclass(frozen=True)
class Fit:
    """The fitted parts of the cost of one model on one device."""

    per_chunk: float
    rates: dict[float, float]  # input size -> seconds per point in a batch
    line: tuple[float, float] | None  # per_point(u) = a + b u across sizes, when two are known
    task: str
    # Sizes seen only in lone passes: their rate is a lone pass's, which overstates a point
    # inside a batch (one slow pass at a new length once made a 33-point run cost 33 of it).
    lone: frozenset[float] = frozenset()

    def per_point(self, units: float) -> float:
        value = self._per_point(units)
        # A point on a smaller input never costs more than one on a larger input measured in
        # a batch: a size measured at a busy moment (10 times slower) must not make the
        # shorter texts cost more than the longer ones.
        larger = [r for u, r in self.rates.items() if u > units and u not in self.lone]
        return min(value, *larger) if larger else value

    def _per_point(self, units: float) -> float:
        floor = 0.2 * min(self.rates.values())  # never near zero below the sizes seen
        if units in self.rates and not (units in self.lone and self.line is not None):
            return self.rates[units]
        if self.line is not None:
            a, b = self.line
            return max(floor, a + b * units)
        ((seen, rate),) = self.rates.items()
        # One size seen: pixels scale a convolutional pass in proportion; a token pass has a
        # fixed part of its own besides.
        fixed = TEXT_FIXED_TOKENS if self.task == "text" else 0.0
        return max(floor, rate * (units + fixed) / (seen + fixed))


class CostModel:
    """What a request costs on each model and device, learned from the engine's timings of
    real runs (see the module's docstring)."""

    def __init__(self):
        self._chunks: dict[Hashable, deque] = {}  # (units, points, seconds)
        self._overheads: dict[Hashable, deque] = {}  # (units, seconds per run)
        self._capacity: dict[Hashable, dict[float, int]] = {}  # units -> points per chunk
        self._ratios: dict[Hashable, deque] = {}  # measured / raw estimate
        self._tasks: dict[Hashable, str] = {}
        self._lock = threading.Lock()

    def known(self, model: str, device: str) -> bool:
        return bool(self._chunks.get((model, device)))

    def observe_run(self, model: str, device: str, units: float, timing: dict | None,
                    seconds: float | None, task: str = "image") -> None:
        """Learn from one engine run: ``timing`` is its ``metadata["timing"]`` (chunk times),
        ``seconds`` the whole run's time (the rest of it is the per-run overhead; None: a run
        whose overhead is no request's, such as a calibration batch)."""
        if not timing or not timing.get("sample"):
            return
        key = (model, device)
        sample = [(int(n), float(s)) for n, s in timing["sample"] if n > 0 and s > 0]
        with self._lock:
            self._tasks[key] = task
            chunks = self._chunks.setdefault(key, deque(maxlen=RECENT_CHUNKS))
            chunks.extend((float(units), n, s) for n, s in sample)
            if seconds is not None:
                overhead = max(0.0, seconds - float(timing.get("chunk_s", 0.0)))
                self._overheads.setdefault(key, deque(maxlen=RECENT_RUNS)).append(
                    (float(units), overhead))
            if int(timing.get("chunks", 0)) > 1 and sample:
                # More than one chunk: the chunk size was the engine's limit, not the request's.
                self._capacity.setdefault(key, {})[float(units)] = max(n for n, _ in sample)

    def observe_outcome(self, model: str, device: str, raw_estimate_s: float,
                        measured_s: float) -> None:
        """How far a request's (uncorrected) estimate was from its measured time."""
        if raw_estimate_s > 0 and measured_s > 0:
            with self._lock:
                self._ratios.setdefault((model, device), deque(maxlen=RECENT_OUTCOMES)).append(
                    (measured_s + OUTCOME_SLACK_S) / (raw_estimate_s + OUTCOME_SLACK_S))

    def fit(self, model: str, device: str) -> Fit | None:
        key = (model, device)
        with self._lock:
            chunks = list(self._chunks.get(key, ()))
            task = self._tasks.get(key, "image")
        if not chunks:
            return None
        by_size: dict[float, list[tuple[int, float]]] = {}
        for units, n, s in chunks:
            by_size.setdefault(units, []).append((n, s))
        intercepts = [line[0] for runs in by_size.values()
                      if (line := theil_sen(runs)) is not None]
        # A chunk's fixed part is never more than 80% of the fastest chunk: a slow single pass
        # (cold) must not pass for a fixed cost of every chunk. Not less: on a busy machine
        # every operation of a pass waits for its second thread's turn on a core, a cost per
        # chunk that can be most of a short text's chunk (half put it on every point instead).
        ceiling = 0.8 * min(s for _, _, s in chunks)
        per_chunk = min(ceiling, max(0.0, statistics.median(intercepts))) if intercepts else 0.0
        # Each chunk's rate weighs as many points as it holds: a batch of 50 says more about a
        # pass inside a batch than a lone pass does.
        rates = {units: weighted_median([((s - per_chunk) / n, n) for n, s in runs])
                 for units, runs in by_size.items()}
        lone = frozenset(u for u, runs in by_size.items() if max(n for n, _ in runs) == 1)
        # The line across sizes is drawn through the sizes measured in batches where there
        # are two; lone-pass sizes only where there are not.
        batched = {u: r for u, r in rates.items() if u not in lone}
        line = None
        if len(rates) > 1:
            line = theil_sen((batched if len(batched) > 1 else rates).items())
            if line is not None and line[1] < 0:
                line = (statistics.median(rates.values()), 0.0)
        return Fit(per_chunk, rates, line, task, lone if len(batched) > 1 else frozenset())

    def _chunk_capacity(self, key: Hashable, device: str, units: float) -> int:
        most = MAX_CHUNK.get(device.split(":")[0], 64)
        seen = self._capacity.get(key)
        if not seen:
            return most
        near = min(seen, key=lambda u: abs(math.log(max(u, 1e-9) / max(units, 1e-9))))
        # Autograd state grows with the input: fewer points fit in a chunk of a larger one.
        return int(max(1, min(most, seen[near] * near / max(units, 1e-9))))

    def _overhead(self, key: Hashable, fit: Fit, units: float) -> float:
        runs = list(self._overheads.get(key, ()))
        if not runs:
            return 0.0
        one = fit.per_chunk + fit.per_point(units)
        # The per-run part is mostly a few forward passes: it scales like one pass does.
        return statistics.median(
            o * one / max(1e-12, fit.per_chunk + fit.per_point(u)) for u, o in runs)

    def raw_estimate(self, model: str, device: str, passes: int, units: float = 1,
                     runs: int = 1) -> float | None:
        """Seconds from the fitted parts alone (None before any run of this model here)."""
        fit = self.fit(model, device)
        if fit is None:
            return None
        key = (model, device)
        # Each engine run (a level of a progressive run) pushes at least one chunk of its own.
        chunks = max(1, runs, math.ceil(passes / self._chunk_capacity(key, device, units)))
        return (max(1, runs) * self._overhead(key, fit, units) + chunks * fit.per_chunk
                + passes * fit.per_point(units))

    def estimate(self, model: str, device: str, passes: int, units: float = 1,
                 runs: int = 1) -> Estimate | None:
        """The expected seconds and their likely range; the central value corrected by how far
        the recent estimates were off, the range from how far they scattered."""
        raw = self.raw_estimate(model, device, passes, units, runs)
        if raw is None:
            return None
        ratios = sorted(self._ratios.get((model, device), ()))
        if len(ratios) < OUTCOMES_FOR_SPREAD:
            return Estimate(raw, raw / PRIOR_SPREAD, raw * PRIOR_SPREAD)
        middle = statistics.median(ratios) if len(ratios) >= OUTCOMES_FOR_CORRECTION else 1.0
        low, high = ratios[len(ratios) // 10], ratios[-1 - len(ratios) // 10]
        return Estimate(raw * middle, raw * min(low, middle / LEAST_SPREAD),
                        raw * max(high, middle * LEAST_SPREAD))


class RateLimiter:
    """At most so many computations per user in any sliding minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._seen: dict[Hashable, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def configured_per_minute() -> int:
        return int(_env_float(RATE_ENV, DEFAULT_RATE_PER_MINUTE))

    def acquire(self, user: Hashable, per_minute: int) -> float:
        """Record a computation for ``user``; returns 0, or the seconds to wait when the user
        already started ``per_minute`` in the last minute (then nothing is recorded)."""
        now = self.clock()
        with self._lock:
            recent = self._seen.setdefault(user, deque())
            while recent and recent[0] <= now - 60.0:
                recent.popleft()
            if len(recent) >= per_minute:
                return recent[0] + 60.0 - now
            recent.append(now)
            return 0.0
