"""Progressive results: a coarse map at once, refined in place up to the requested setting.

Integrated Gradients with many steps and SmoothGrad with many samples are run as a short
ladder of levels (for 50 Riemann steps: 5, 25, 50), each shown as soon as it is ready, with
its completeness gap or sample count. A ``saliency_core.Refiner`` kept per session and input
makes each level evaluate only the points the previous ones did not: the whole ladder costs
what the last level costs alone. Raising the steps or samples later starts from the largest
count already evaluated whose grid it contains, and going back down is served from the kept
sums (or the shared result cache) without a model pass.

Which smaller counts a run reuses is the method's own capability (``refine_nested``, read
through ``saliency_core.harness.refine.reusable_counts``), not a test of its name. Where none nest
(Gauss-Legendre, the midpoint rule, SmoothGrad over IG with a random baseline) the ladder is
one cheap preview plus the full run. The Text page runs the same ladder with a
``saliency_core.TextRefiner``. Every level is stored in
the shared result cache under its own settings, and the page keeps the best level reached,
so Stop leaves the best map so far on screen.

This module holds the ladder and what a session keeps of it; workbench.jobs.compute runs it
(in this process with a kept refiner, or as one ``refine`` request to the engine service).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, MutableMapping
from dataclasses import dataclass
from typing import Any

from saliency_core.harness.refine import REFINABLE, reusable_counts
from workbench.jobs.results import ImageResult, TextResult

Result = ImageResult | TextResult

# The first level aims at about an eighth of the work, never below these counts (by the
# count a method refines: fewer IG steps or SmoothGrad samples show mostly noise).
FIRST_FRACTION = 8
MIN_FIRST = {"steps": 4, "samples": 2}
# Below this many evaluations the full run is quick enough to show at once.
MIN_PROGRESSIVE = 16
# Above this completeness gap the page warns; the step search looks for a count below it.
LARGE_GAP = 0.05
REFINERS_PER_SESSION = 4
_REFINERS = "_progressive_refiners"
_BEST = "_progressive_best"


@dataclass(frozen=True)
class Level:
    count: int  # steps or samples of this level
    total: int  # the requested count
    knob: str  # "steps" or "samples"

    @property
    def final(self) -> bool:
        return self.count == self.total


def ladder(method: str, params: dict, task: str = "image") -> list[int]:
    """The counts to evaluate, coarse to fine, ending at the requested one: each level one
    the next reuses (the method's refinement says which do), or one cheap preview where
    none nests."""
    knob = REFINABLE.get(method)
    if knob is None:
        return []
    n = int(params.get(knob, 0))
    least = MIN_FIRST.get(knob, 1)
    first = max(least, math.ceil(n / FIRST_FRACTION))
    if n < MIN_PROGRESSIVE or first >= n:
        return [n]
    levels = [n]
    while levels[0] > first:
        inside = [m for m in reusable_counts(method, {**params, knob: levels[0]}, task)
                  if least <= m <= levels[0] // 2]
        if not inside:
            break
        levels.insert(0, max(inside))
    return levels if len(levels) > 1 else [first, n]  # no nesting: one preview


def kept_refiner(state: MutableMapping[str, Any], key: Hashable,
                 make: Callable[[], object]) -> object:
    """This session's refiner for ``key`` (model, device, input, method, target), made with
    ``make`` when the session has none; a session keeps its last few."""
    store: OrderedDict = state.setdefault(_REFINERS, OrderedDict())
    refiner = store.pop(key, None)
    if refiner is None:
        refiner = make()
    store[key] = refiner
    while len(store) > REFINERS_PER_SESSION:
        store.popitem(last=False)
    return refiner


def best_so_far(state: MutableMapping[str, Any], computation: str) -> tuple[Result, Level] | None:
    """The finest level this session reached for a computation (what Stop leaves)."""
    return state.get(_BEST, {}).get(computation)


def keep_best(state: MutableMapping[str, Any], computation: str, result: Result,
              level: Level) -> None:
    best = state.setdefault(_BEST, {})
    best.clear()  # one computation at a time is all a page shows after Stop
    best[computation] = (result, level)


def level_note(result: Result, level: Level) -> str:
    """'25 of 50 steps · completeness gap 3.1 %' for a status line."""
    note = f"{level.count} of {level.total} {level.knob}"
    gap = completeness_gap(result.metadata)
    if gap is not None:
        note += f" · completeness gap {gap:.1%}"
    return note


def completeness_gap(meta: dict) -> float | None:
    """|sum of attributions - (f(x) - f(baseline))| relative to the change, or None."""
    try:
        total = float(meta["sum_attribution"][0])
        change = float(meta["f_x"][0]) - float(meta["f_baseline"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return abs(total - change) / max(abs(change), 1e-12)


def gap_search_counts(method: str, params: dict, most: int, task: str = "image") -> list[int]:
    """The step counts a search for a closed completeness gap measures, above the requested
    one: doubling, on the grid the previous count nests in when the rule nests (so a Refiner
    evaluates only the new points), up to ``most`` (the method's limit)."""
    if REFINABLE.get(method) != "steps":
        return []
    counts: list[int] = []
    count = int(params.get("steps", 0))
    while count * 2 - 1 <= most:
        # Doubling the intervals of a grid that includes its end point is 2n - 1 points.
        nested = [n for n in (count * 2, count * 2 - 1) if n <= most
                  and count in reusable_counts(method, {**params, "steps": n}, task)]
        count = nested[0] if nested else count * 2
        if count > most:
            break
        counts.append(count)
    return counts
