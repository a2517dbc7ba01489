"""What a request will cost before it runs, the per-request budget, and a per-user rate limit.

A request's cost is its model passes (from the method and its settings) times the measured
time of one pass for that model, device and input size. Each finished request updates the
measurement, so estimates follow the server's real speed; before the first one a single
gradient pass is timed.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from saliency_core.methods import get as method_entry

BUDGET_ENV = "SALIENCY_REQUEST_BUDGET_S"
LIMIT_ENV = "SALIENCY_REQUEST_LIMIT_S"
RATE_ENV = "SALIENCY_RATE_PER_MINUTE"
DEFAULT_BUDGET_S = 30.0
DEFAULT_LIMIT_FACTOR = 10.0  # the hard limit, without an explicit setting: 10 budgets
DEFAULT_RATE_PER_MINUTE = 120
# Recent runs count more: the server's load and clocks change.
EMA_WEIGHT = 0.3


def estimate_passes(method: str, params: dict, task: str = "image") -> int:
    """Model passes (forward + input backward per point) a method needs with these settings."""
    entry = method_entry(method)
    full = {**entry.spec.defaults(task), **{k: v for k, v in params.items() if v is not None}}
    if entry.wraps:
        return entry.passes(full) * estimate_passes(str(full["base"]), {}, task)
    return entry.passes(full)


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class Budget:
    budget_s: float  # above this a request needs an explicit click
    limit_s: float  # above this it is refused

    @classmethod
    def configured(cls) -> Budget:
        budget = _env_float(BUDGET_ENV, DEFAULT_BUDGET_S)
        return cls(budget, max(budget, _env_float(LIMIT_ENV, budget * DEFAULT_LIMIT_FACTOR)))

    def verdict(self, estimate_s: float) -> str:
        if estimate_s > self.limit_s:
            return "refused"
        if estimate_s > self.budget_s:
            return "confirm"
        return "ok"


class CostModel:
    """Seconds per model pass per input unit (1 for an image, tokens for text), per model and
    device, as a moving average of measured runs."""

    def __init__(self):
        self._per_unit: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def known(self, model: str, device: str) -> bool:
        return (model, device) in self._per_unit

    def observe(self, model: str, device: str, passes: int, units: int, seconds: float) -> None:
        if passes <= 0 or seconds <= 0:
            return
        sample = seconds / (passes * max(1, units))
        with self._lock:
            old = self._per_unit.get((model, device))
            self._per_unit[(model, device)] = sample if old is None else (
                EMA_WEIGHT * sample + (1 - EMA_WEIGHT) * old)

    def pass_seconds(self, model: str, device: str, units: int = 1) -> float | None:
        per_unit = self._per_unit.get((model, device))
        return None if per_unit is None else per_unit * max(1, units)

    def estimate(self, model: str, device: str, passes: int, units: int = 1) -> float | None:
        one = self.pass_seconds(model, device, units)
        return None if one is None else one * passes


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
