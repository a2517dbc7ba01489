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
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
import torch

import saliency_core
from saliency_core.harness.refine import REFINABLE, reusable_counts
from workbench.jobs import admission as service
from workbench.jobs import compute, costs
from workbench.jobs.results import ImageResult, TextResult

Result = ImageResult | TextResult

# The first level aims at about an eighth of the work, never below these counts (by the
# count a method refines: fewer IG steps or SmoothGrad samples show mostly noise).
FIRST_FRACTION = 8
MIN_FIRST = {"steps": 4, "samples": 2}
# Below this many evaluations the full run is quick enough to show at once.
MIN_PROGRESSIVE = 16
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


def _refiner(key: tuple, make: Callable[[], object]):
    """This session's refiner for ``key`` (model, device, input, method, target)."""
    store: OrderedDict = st.session_state.setdefault(_REFINERS, OrderedDict())
    refiner = store.pop(key, None)
    if refiner is None:
        refiner = make()
    store[key] = refiner
    while len(store) > REFINERS_PER_SESSION:
        store.popitem(last=False)
    return refiner


def best_so_far(computation: str) -> tuple[Result, Level] | None:
    """The finest level this session reached for a computation (what Stop leaves)."""
    return st.session_state.get(_BEST, {}).get(computation)


def _keep_best(computation: str, result: Result, level: Level) -> None:
    best = st.session_state.setdefault(_BEST, {})
    best.clear()  # one computation at a time is all a page shows after Stop
    best[computation] = (result, level)


@dataclass(frozen=True)
class _Job:
    """What differs between an image and a text run of the ladder."""

    computation: str
    key: Callable[[dict], str]  # level params -> result cache key
    one_shot: Callable[[], Result]  # the whole request at once (cache, queue, budget)
    request: Callable[[], object]  # the scheduler's request, judged once by the budget
    refiner: Callable[[], object]  # this session's refiner for the input
    run_level: Callable[[object, dict], Result]  # (refiner, level params) -> result
    remote: bool  # the engine service does the work (compute.engine_client)
    kind: str = "image"


def _ladder_run(job: _Job, method: str, params: dict, levels: list[int], progress,
                on_level: Callable[[Result, Level], None] | None) -> Result:
    hit = compute.cached(job.computation)
    # A Refiner needs the model in this process; with the engine service (and no ladder of
    # its own there, as images have) the request goes there whole.
    if hit is not None or not levels or job.remote:
        return job.one_shot()
    knob = REFINABLE[method]
    # The whole ladder costs what its last level costs alone: the budget and the rate limit
    # judge that once; each level then waits its turn in the device's queue.
    request = job.request()
    estimate = service.admit(request)
    refiner = None
    result = None
    done = 0
    for count in levels:
        level_params = {**params, knob: count}
        level = Level(count, levels[-1], knob)
        key = job.key(level_params)
        result = compute.cached(key)
        if result is None:
            if refiner is None:
                refiner = job.refiner()
            if progress is not None and hasattr(progress, "relabel"):
                progress.relabel(f"{count} of {level.total} {knob}")
            passes = costs.estimate_passes(method, {**params, knob: count - done}, job.kind)
            result = compute.scheduled_step(
                request, estimate, key,
                lambda lp=level_params, r=refiner: job.run_level(r, lp),
                passes=passes, progress=progress)
            compute.result_cache().put(key, result)
        done = count
        _keep_best(job.computation, result, level)
        if on_level is not None and not level.final:
            on_level(result, level)
    return result


def explain_image(loaded, device: str, x: torch.Tensor, digest: str, method: str,
                  params: dict, target, progress=None,
                  on_level: Callable[[ImageResult, Level], None] | None = None) -> ImageResult:
    """Like ``compute.explain_image``, but for refinable methods each level of the ladder is
    computed (reusing the previous ones), cached and handed to ``on_level`` before the next;
    the last level's result is returned. Other methods are one run."""
    def key(level_params: dict) -> str:
        return compute.image_key(loaded, device, digest, method, level_params, target)

    computation = key(params)
    job = _Job(
        computation, key,
        one_shot=lambda: compute.explain_image(loaded, device, x, digest, method, params,
                                               target, progress=progress),
        request=lambda: compute.image_request(loaded, device, x, method, params, target,
                                              computation, page="image", progress=progress),
        refiner=lambda: _refiner(
            (compute.model_identity(loaded), device, digest, method, str(target)),
            lambda: saliency_core.Refiner(loaded, x, method, target=target)),
        run_level=lambda r, lp: compute.image_result(r.explain(**lp, progress=progress)),
        remote=compute.engine_client(loaded) is not None)
    levels = ladder(method, params)
    if levels and job.remote and compute.cached(computation) is None:
        return _on_the_service(loaded, device, x, digest, method, params, target, levels,
                               computation, progress, on_level)
    return _ladder_run(job, method, params, levels, progress, on_level)


def _on_the_service(loaded, device, x, digest, method, params, target, levels, computation,
                    progress, on_level) -> ImageResult:
    """The ladder as one request to the engine service: the replica keeps the Refiner for the
    length of the request (a later rerun with more steps starts over there; the levels already
    computed come from the result cache), and streams each coarse level as it is ready."""
    knob = REFINABLE[method]
    total = levels[-1]
    request = compute.image_request(loaded, device, x, method, params, target, computation,
                                    page="image", progress=progress)
    estimate = service.admit(request)
    # Levels already in the result cache are not asked for again: the replica's Refiner
    # starts where the in-process one would, so every level equals the in-process one.
    counts = [c for c in levels if c == total or compute.cached(compute.image_key(
        loaded, device, digest, method, {**params, knob: c}, target)) is None]

    def keep(count: int, explanation) -> ImageResult:
        result = compute.image_result(explanation)
        compute.result_cache().put(compute.image_key(loaded, device, digest, method,
                                                     {**params, knob: count}, target), result)
        level = Level(count, total, knob)
        _keep_best(computation, result, level)
        return result

    def shown(count: int, explanation) -> None:
        result = keep(count, explanation)
        if on_level is not None:
            on_level(result, Level(count, total, knob))
        if progress is not None and hasattr(progress, "relabel"):
            following = next((c for c in counts if c > count), total)
            progress.relabel(f"{following} of {total} {knob}")

    if progress is not None and hasattr(progress, "relabel"):
        progress.relabel(f"{counts[0]} of {total} {knob}")
    final = compute.scheduled_step(
        request, estimate, computation,
        lambda: keep(total, compute.engine_refine(loaded, x, method, target, params, counts,
                                                  progress=progress, on_level=shown)),
        passes=request.passes, progress=progress)
    return final


def explain_text(loaded, device: str, text: str, method: str, params: dict, target,
                 progress=None,
                 on_level: Callable[[TextResult, Level], None] | None = None) -> TextResult:
    """``compute.explain_text`` as a ladder of levels, like ``explain_image``. ``params`` holds
    the method's parameters and ``max_length``, which fixes the tokens and so the refiner."""
    def key(level_params: dict) -> str:
        return compute.text_key(loaded, device, text, method, level_params, target)

    computation = key(params)
    max_length = params.get("max_length")
    method_params = {k: v for k, v in params.items() if k != "max_length"}
    digest = hashlib.sha256(f"{max_length}:{text}".encode()).hexdigest()
    job = _Job(
        computation, key,
        one_shot=lambda: compute.explain_text(loaded, device, text, method, params, target,
                                              progress=progress),
        request=lambda: compute.text_request(loaded, device, text, method, params, target,
                                             computation, progress=progress),
        refiner=lambda: _refiner(
            (compute.model_identity(loaded), device, digest, method, str(target)),
            lambda: saliency_core.TextRefiner(loaded, loaded.tokenizer, text, method, target,
                                              max_length=max_length)),
        run_level=lambda r, lp: compute.text_result(r.explain(
            **{k: v for k, v in lp.items() if k != "max_length"}, progress=progress)),
        remote=compute.engine_client(loaded) is not None, kind="text")
    return _ladder_run(job, method, params, ladder(method, method_params, "text"), progress,
                       on_level)


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


def preview_row(area, caption: str, images: list[tuple]) -> None:
    """Draw (PNG bytes, caption) pairs in one row of ``area`` (an st.empty), replacing what it
    showed: the coarse maps of a run still in progress."""
    with area.container():
        st.caption(caption)
        columns = st.columns(max(3, len(images)))
        for column, (pixels, label) in zip(columns, images):
            column.image(pixels, width="stretch", caption=label)
