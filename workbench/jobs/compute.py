"""The request path for model work: a page's ``Computation`` in, its result out.

A page builds one ``saliency_core.computation.Computation`` per request and hands it here with
the loaded model and its input. The result cache is looked up once, under the computation's
key; on a miss the work waits its turn in the device's queue (workbench.jobs.admission,
workbench.jobs.scheduler), within the budget and the rate limit, and runs on the app's engine
(workbench.jobs.engine: in this process, or the engine service with ``SALIENCY_ENGINE_URL``).
Refinable settings (many IG steps, many SmoothGrad samples) run as a ladder of levels
(workbench.jobs.progressive), each shown as soon as it is ready.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from saliency_core import get_method
from saliency_core.computation import Computation, digest_key, text_digest
from saliency_core.engine.stream import MAX_CHUNK
from saliency_core.engines import Engine
from saliency_core.errors import CancelledError, SaliencyError
from saliency_core.evaluation.randomization import DEFAULT_MAX_STEPS
from saliency_core.evaluation.sanity_inputs import partner_problem
from saliency_core.harness.refine import REFINABLE, reusable_counts
from saliency_core.targets import NextToken
from workbench.hosting import telemetry
from workbench.jobs import admission, costs, engine, progressive
from workbench.jobs.progressive import Level
from workbench.jobs.results import (
    GenerationResult,
    ImageResult,
    ResultCache,
    SanityResult,
    Scoreboard,
    TextResult,
    configured_cache,
)
from workbench.jobs.shared import shared
from workbench.jobs.visitor import Visitor

# saliency_core.evaluation.scoreboard's default number of deletion/insertion steps, for the cost estimate.
SCOREBOARD_STEPS = 32
# About how long a calibration batch may take: the many-point methods (IG, SmoothGrad) run in
# chunks as big as the memory allows, where one pass costs much less than a lone one.
CALIBRATION_S = 0.3
# Images: most models are cheap per point, and a chunk of 8 or more tells a chunk's fixed part
# from a point's far better than one of 2 (on a busy machine a lone pass is mostly waiting).
CALIBRATION_IMAGE_S = 1.0
CALIBRATION_LEAST_IMAGES = 8
CALIBRATION_FULL_S = 6.0  # the most a full calibration chunk may take (foreseen linearly)
CALIBRATION_REPEATS = 3
CALIBRATION_LEAST_TEXTS = 4  # IG steps of a text's calibration chunk
# On a short text (up to CALIBRATION_SHORT_TEXT tokens) a chunk of 4 cannot tell a chunk's
# fixed part from a point's on a busy machine (the two chunks differed by less than the noise):
# there, where points are cheap, at least this many.
CALIBRATION_LEAST_SHORT_TEXTS = 16
CALIBRATION_SHORT_TEXT = 64
# An over-budget progressive run shows its coarse levels before asking: those that together
# take at most this share of the budget (the first level whenever it fits in the budget).
COARSE_SHARE = 0.25
# The short length a long text's calibration also measures (tokens).
CALIBRATION_SHORT = 16


@shared
def result_cache() -> ResultCache:
    cache = configured_cache()
    telemetry.RESULT_CACHE_BYTES.set_function(lambda: cache.size_bytes)
    return cache


def cached(key: str):
    return result_cache().get(key)


# ---- what a result depends on ----------------------------------------------------------------

def pixels_digest(pixels: np.ndarray) -> str:
    """Content hash of an image as the model sees it (before preprocessing)."""
    h = hashlib.sha256(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def model_identity(loaded) -> str:
    """What a cached result depends on in its model: the name, and for an upload the hash of
    its weights. An owner may upload other weights under the same name, and two owners may
    choose the same name; neither may be served the other weights' results."""
    digest = loaded.card.get("sha256_prefix") if loaded.source == "uploaded" else None
    return f"{loaded.name}@{digest}" if digest else loaded.name


def image_computation(loaded, device: str, digest: str, method: str, params: dict,
                      target) -> Computation:
    """The Computation of ``method`` on an image (``digest``: its pixels_digest)."""
    return Computation("image", model_identity(loaded), device, digest, method, dict(params),
                       target)


def text_computation(loaded, device: str, text: str, method: str, params: dict,
                     target) -> Computation:
    """The Computation of ``method`` on a text; ``params`` include ``max_length``."""
    return Computation("text", model_identity(loaded), device, text_digest(text), method,
                       dict(params), target)


# ---- results as the pages keep them ---------------------------------------------------------

def image_result(explanation, i: int = 0, batch: int = 1) -> ImageResult:
    """The numpy result a page keeps, for image ``i`` of an Explanation of ``batch`` images."""
    metadata = dict(explanation.metadata)
    if batch > 1:
        # Per-sample lists (completeness figures) belong to their own input; totals are shared.
        metadata = {k: (v[i:i + 1] if isinstance(v, list) and len(v) == batch else v)
                    for k, v in metadata.items()}
        metadata["batched_with"] = batch - 1
    return ImageResult(
        attribution=explanation.attribution[i].detach().float().cpu().numpy(),
        probabilities=explanation.probabilities[i].detach().float().cpu().numpy(),
        target=int(explanation.target[i]),
        predicted=int(explanation.predicted[i]),
        metadata=metadata,
    )


def text_result(out) -> TextResult:
    """The numpy result a page keeps, from a TextAttribution."""
    return TextResult(
        tokens=list(out.tokens),
        special=list(out.special),
        scores=np.asarray(out.scores, dtype=np.float64),
        probabilities=np.asarray(out.probabilities, dtype=np.float64),
        target=int(out.target),
        predicted=int(out.predicted),
        metadata=dict(out.metadata),
    )


# ---- the scheduler's requests ----------------------------------------------------------------

def image_units(x: torch.Tensor) -> int:
    """What the cost model counts for an image: pixels as the model reads them (after
    preprocessing; a 48-megapixel photo costs what its resized input costs)."""
    return int(x.shape[-2] * x.shape[-1])


def _timed_run(run: Callable[[], Any]) -> tuple[dict | None, float]:
    """(the engine's chunk timings, the run's seconds) of one real engine run."""
    began = time.perf_counter()
    out = run()
    return out.metadata.get("timing"), time.perf_counter() - began


def _calibrate_image(runner: Engine, loaded, x: torch.Tensor, device: str
                     ) -> Callable[[costs.CostModel], None]:
    """Real gradient runs of this model on this input size, alone and in a batch (the two
    chunk sizes separate a chunk's fixed part from a point's), where the engine runs (the
    service's replica reports its own chunk times)."""
    def measure(model: costs.CostModel) -> None:
        units = image_units(x)
        runner.explain(loaded, x, "gradient")  # first-call allocations and kernel choices
        lone = sorted((_timed_run(lambda: runner.explain(loaded, x, "gradient"))
                       for _ in range(CALIBRATION_REPEATS)), key=lambda timed: timed[1])
        batch = x.repeat(calibration_points(lone[0][1], device, CALIBRATION_IMAGE_S,
                                            least=CALIBRATION_LEAST_IMAGES), 1, 1, 1)
        for _warm_then_measure in range(2):
            many = _timed_run(lambda: runner.explain(loaded, batch, "gradient"))
        for timed in lone:
            model.observe_run(loaded.name, device, units, *timed, "image")
        # A batch's own fixed part is not one request's: only its chunk times are kept.
        model.observe_run(loaded.name, device, units, many[0], None, "image")
        # A full chunk, where affordable: on a busy machine a chunk's time hardly grows with
        # its points, and no line through small chunks foresees that.
        most = MAX_CHUNK.get(device.split(":")[0], 64)
        n, t1, tn = batch.shape[0], lone[len(lone) // 2][1], many[1]
        if n < most and t1 + (tn - t1) / max(1, n - 1) * (most - 1) <= CALIBRATION_FULL_S:
            full = x.repeat(most, 1, 1, 1)
            model.observe_run(loaded.name, device, units,
                              _timed_run(lambda: runner.explain(loaded, full, "gradient"))[0],
                              None, "image")
    return measure


def calibration_points(one_pass_s: float, device: str, seconds: float = CALIBRATION_S,
                       least: int = 2) -> int:
    """Points in the calibration batch: as many as a batch of the big runs holds where that is
    quick (a small model's pass inside a chunk of 64 costs a fraction of one in a chunk of 8),
    fewer on a slow model, so that the calibration stays cheap."""
    most = MAX_CHUNK.get(device.split(":")[0], 64)
    # A pass inside a batch costs about a quarter of a lone one, or less.
    return int(max(least, min(most, 4 * seconds // max(one_pass_s, 1e-6))))


def calibration_lengths(tokens: int, longest: int) -> list[int]:
    """The request's length and a second one, far enough from it for the per-token slope."""
    other = (CALIBRATION_SHORT if tokens > 4 * CALIBRATION_SHORT
             else min(longest, max(8 * tokens, 4 * CALIBRATION_SHORT)))
    return sorted({min(tokens, longest), max(4, min(other, longest))})


def _calibrate_text(runner: Engine, loaded, text: str, max_length: int, device: str,
                    tokens: int) -> Callable[[costs.CostModel], None]:
    """Real runs on this model at the request's length and one more (a pass's fixed part and
    its part per token), each alone and as one chunk of a few points."""
    def measure(model: costs.CostModel) -> None:
        # Long enough for every length measured: the text repeated, cut by max_length.
        longer = " ".join([text.strip() or "text"] * (max_length // max(1, tokens - 2) + 2))
        def run(length: int, method: str, **params) -> tuple[dict | None, float]:
            for _warm_then_measure in range(2):
                timed = _timed_run(lambda: runner.attribute_text(
                    loaded, longer, method, max_length=length, **params))
            model.observe_run(loaded.name, device, length, *timed, "text")
            return timed

        for length in calibration_lengths(tokens, max_length):
            _timing, one_s = run(length, "gradient")
            # IG's points go through as one chunk: as many as the calibration's time allows.
            least = (CALIBRATION_LEAST_SHORT_TEXTS if length <= CALIBRATION_SHORT_TEXT
                     else CALIBRATION_LEAST_TEXTS)
            run(length, "integrated_gradients",
                steps=calibration_points(one_s, device, least=least))
    return measure


def image_request(runner: Engine, loaded, computation: Computation, x: torch.Tensor,
                  page: str = "image", progress=None, cancel=None) -> admission.Request:
    """The scheduler's request for one image [1, C, H, W]: batched with other sessions'
    images where saliency_core.computation.batch_key allows."""
    params = dict(computation.params)

    def run_batch(inputs):
        batch = torch.cat(list(inputs), dim=0)
        explanation = runner.explain(loaded, batch, computation.method,
                                     target=computation.target, progress=progress,
                                     cancel=cancel, **params)
        return [image_result(explanation, i, len(inputs)) for i in range(len(inputs))]

    return admission.Request(
        page=page, model=loaded.name, device=computation.device, method=computation.method,
        key=computation.key, payload=x, run_batch=run_batch,
        passes=costs.estimate_passes(computation.method, params, "image"),
        units=image_units(x), batch_key=computation.batch_key(tuple(x.shape[1:]), x.dtype),
        calibrate=_calibrate_image(runner, loaded, x, computation.device),
        params=params, task="image")


def token_count(loaded, text: str, max_length: int | None) -> int:
    """Tokens the model reads of ``text``: after truncation to ``max_length`` and to the
    model's own limit."""
    try:
        count = len(loaded.tokenizer(text)["input_ids"])
    except Exception:  # noqa: BLE001 - only an estimate: fall back to a word count
        count = len(text.split()) + 2
    own = getattr(getattr(loaded, "tokenizer", None), "model_max_length", None)
    for limit in (max_length, own if isinstance(own, int) and own < 1_000_000 else None):
        if limit:
            count = min(count, int(limit))
    return count


def text_request(runner: Engine, loaded, computation: Computation, text: str,
                 page: str = "text", progress=None, cancel=None) -> admission.Request:
    params = dict(computation.params)

    def run_batch(texts):
        return [text_result(runner.attribute_text(loaded, texts[0], computation.method,
                                                  target=computation.target, progress=progress,
                                                  cancel=cancel, **params))]

    max_length = params.get("max_length")
    method_params = {k: v for k, v in params.items() if k != "max_length"}
    tokens = token_count(loaded, text, max_length)
    # The cost model's size of a text is its tokens as the model reads them.
    return admission.Request(
        page=page, model=loaded.name, device=computation.device, method=computation.method,
        key=computation.key, payload=text, run_batch=run_batch,
        passes=costs.estimate_passes(computation.method, method_params, "text"),
        units=tokens,
        calibrate=_calibrate_text(runner, loaded, text, int(max_length or 512),
                                  computation.device, tokens),
        params=method_params, task="text")


def _step(visitor: Visitor, request: admission.Request, estimate: costs.Estimate | None, key,
          work: Callable[[], Any], passes: int, progress=None) -> Any:
    """One step of an admitted request (a level of a progressive run): queued like any other
    work, without a second budget check or rate-limit charge."""
    step = admission.Request(
        page=request.page, model=request.model, device=request.device, method=request.method,
        key=key, payload=None, run_batch=lambda _payloads: [work()], passes=passes,
        units=request.units, task=request.task)
    share = None if estimate is None else estimate.seconds * passes / max(1, request.passes)
    return admission.schedule(visitor, step, share, progress)


def _relabel(progress, text: str) -> None:
    if progress is not None and hasattr(progress, "relabel"):
        progress.relabel(text)


# ---- the page's calls ------------------------------------------------------------------------

def explain_image(visitor: Visitor, loaded, computation: Computation, x: torch.Tensor,
                  progress=None, on_level: Callable[[ImageResult, Level], None] | None = None,
                  page: str = "image") -> ImageResult:
    """Attribution of one preprocessed image [1, C, H, W] for ``computation``: from the
    result cache when possible, otherwise through the device's queue. Refinable settings run
    as a ladder of levels, each cached and handed to ``on_level`` before the next."""
    hit = cached(computation.key)
    if hit is not None:
        return hit
    runner = engine.for_models(loaded)
    request = image_request(runner, loaded, computation, x, page, progress)
    levels = progressive.ladder(computation.method, dict(computation.params))
    make_refiner = getattr(runner, "refiner", None)
    if not levels:
        result = admission.submit(visitor, request, progress=progress)
        result_cache().put(computation.key, result)
        return result
    if make_refiner is None:
        return _ladder_on_the_service(visitor, runner, loaded, computation, x, request, levels,
                                      progress, on_level)
    return _ladder_here(
        visitor, computation, request, levels, "image",
        make=lambda: make_refiner(loaded, x, computation.method, target=computation.target),
        run_level=lambda r, lp: image_result(r.explain(**lp, progress=progress)),
        progress=progress, on_level=on_level)


def explain_text(visitor: Visitor, loaded, computation: Computation, text: str,
                 progress=None, on_level: Callable[[TextResult, Level], None] | None = None,
                 page: str = "text") -> TextResult:
    """Token attribution of ``text`` for ``computation`` (its params hold ``max_length``,
    which fixes the tokens and so the refiner), like ``explain_image``. The engine service
    keeps no text refiner: there the request runs whole."""
    hit = cached(computation.key)
    if hit is not None:
        return hit
    runner = engine.for_models(loaded)
    request = text_request(runner, loaded, computation, text, page, progress)
    max_length = computation.params.get("max_length")
    method_params = {k: v for k, v in computation.params.items() if k != "max_length"}
    levels = progressive.ladder(computation.method, method_params, "text")
    make_refiner = getattr(runner, "text_refiner", None)
    if not levels or make_refiner is None:
        result = admission.submit(visitor, request, progress=progress)
        result_cache().put(computation.key, result)
        return result
    return _ladder_here(
        visitor, computation, request, levels, "text",
        make=lambda: make_refiner(loaded, text, computation.method, computation.target,
                                  max_length=max_length),
        run_level=lambda r, lp: text_result(r.explain(
            **{k: v for k, v in lp.items() if k != "max_length"}, progress=progress)),
        progress=progress, on_level=on_level)


def _ladder_here(visitor: Visitor, computation: Computation, request: admission.Request,
                 levels: list[int], task: str, make: Callable[[], object],
                 run_level: Callable[[Any, dict], Any], progress, on_level):
    """The ladder with this session's refiner for the input, kept across reruns: each level
    evaluates only the points the previous ones did not.

    Over the budget (or the limit), the coarse levels that fit in it run at once all the
    same, and the question (or the refusal) carries the finest of them, with how long the
    rest would take: nobody waits for a confirmation with nothing on screen."""
    method, params = computation.method, dict(computation.params)
    knob = REFINABLE[method]
    request = dataclasses.replace(request, runs=len(levels))
    refiner_key = _refiner_key(computation)
    kept: dict[str, Any] = {"refiner": None, "done": 0, "result": None}

    def run(counts: list[int], estimate: costs.Estimate | None) -> Any:
        for count in counts:
            level_computation = computation.with_params(**{knob: count})
            level = Level(count, levels[-1], knob)
            result = cached(level_computation.key)
            if result is None:
                if kept["refiner"] is None:
                    kept["refiner"] = progressive.kept_refiner(visitor.state, refiner_key, make)
                _relabel(progress, f"{count} of {level.total} {knob}")
                passes = costs.estimate_passes(method, {**params, knob: count - kept["done"]},
                                               task)
                result = _step(visitor, request, estimate, level_computation.key,
                               lambda lp=dict(level_computation.params), r=kept["refiner"]:
                               run_level(r, lp), passes=passes, progress=progress)
                result_cache().put(level_computation.key, result)
            kept["done"], kept["result"] = count, result
            progressive.keep_best(visitor.state, computation.key, result, level)
            if on_level is not None and not level.final:
                on_level(result, level)
        return kept["result"]

    # The whole ladder costs what its last level costs alone (plus a run's fixed part per
    # level): the budget and the rate limit judge that once; each level then waits its turn.
    try:
        estimate = admission.admit(visitor, request)
    except (admission.OverBudget, admission.Refused) as refusal:
        if refusal.estimate is None:
            raise  # the rate limit: nothing may run now
        coarse = _coarse_levels(request, levels, knob, params, task)
        if not coarse:
            raise
        result = run(coarse, None)
        raise _with_coarse(refusal, request, levels, coarse, knob, params, task,
                           (result, Level(coarse[-1], levels[-1], knob))) from None
    return run(levels, estimate)


def _level_estimate(request: admission.Request, knob: str, params: dict, task: str,
                    counts: int, runs: int) -> costs.Estimate | None:
    passes = costs.estimate_passes(request.method, {**params, knob: counts}, task)
    return admission.cost_model().estimate(request.model, request.device, passes, request.units,
                                           runs)


def _coarse_levels(request: admission.Request, levels: list[int], knob: str, params: dict,
                   task: str) -> list[int]:
    """The coarse levels an over-budget ladder runs before asking: the first one always (a
    person never waits for a question with nothing on screen) unless it alone passes the
    hard limit, and the next ones while together they take at most COARSE_SHARE of the budget
    (the question should not wait long either)."""
    budget = costs.Budget.configured()
    chosen: list[int] = []
    for i, count in enumerate(levels[:-1]):
        est = _level_estimate(request, knob, params, task, count, i + 1)
        most = budget.limit_s if not chosen else budget.budget_s * COARSE_SHARE
        if est is None or (est.low if not chosen else est.seconds) > most:
            break
        chosen.append(count)
    return chosen


def _with_coarse(refusal: admission.OverBudget | admission.Refused, request: admission.Request,
                 levels: list[int], coarse: list[int], knob: str, params: dict, task: str,
                 partial: tuple) -> admission.OverBudget | admission.Refused:
    """The question (or refusal) of an over-budget ladder, once its coarse levels ran: what
    is on screen, and how long the rest would take."""
    total = refusal.estimate
    done = _level_estimate(request, knob, params, task, coarse[-1], len(coarse))
    rest_s = max(0.0, total.seconds - (done.seconds if done else 0.0))
    share = rest_s / max(1e-12, total.seconds)
    rest = costs.Estimate(rest_s, total.low * share, total.high * share)
    budget = costs.Budget.configured()
    # What is on screen: a map on the image pages, highlighted tokens on the Text page.
    what = "The map shown is a coarse one" if task == "image" else (
        "The token scores shown are coarse ones")
    shown = (f"{what} ({coarse[-1]:,} of {levels[-1]:,} {knob}). "
             f"The full {levels[-1]:,} {knob} ({request.passes:,} model passes of "
             f"{request.model} on {request.device}) need {rest.text()} more")
    if isinstance(refusal, admission.Refused):
        return admission.Refused(
            f"Refused: {shown}, more than the limit per request on this server "
            f"({budget.limit_s:.3g} s) even at the fast end. To stay under it, "
            f"{admission.advice(request, budget.limit_s)}.", total, partial)
    return admission.OverBudget(
        f"{shown}, more than the {costs.seconds_text(budget.budget_s)} budget per request on "
        f"this server. Press Run anyway to refine it (the coarse levels are kept), or "
        f"{admission.advice(request, budget.budget_s)}.", refusal.key, rest.seconds, rest,
        partial)


def _refiner_key(computation: Computation) -> tuple:
    """What a kept refiner is for: the ladder and the step search share one per input."""
    return (computation.model, computation.device, computation.input_digest,
            computation.params.get("max_length"), computation.method, str(computation.target))


def gap_search(visitor: Visitor, loaded, computation: Computation, x: torch.Tensor,
               threshold: float = progressive.LARGE_GAP, progress=None,
               page: str = "image") -> list[tuple[int, float]]:
    """(steps, completeness gap) measured at the counts of ``progressive.gap_search_counts``
    above the computation's, until the gap is at most ``threshold`` or the method's limit is
    reached. A button starts it (its explicit confirmation); each count is queued as its own
    request, cached under its own settings (choosing that count afterwards costs no pass),
    and on a nesting rule this session's refiner evaluates only the new points."""
    method, params = computation.method, dict(computation.params)
    most = next(int(p.max) for p in get_method(method).params if p.name == "steps")
    counts = progressive.gap_search_counts(method, params, most)
    runner = engine.for_models(loaded)
    make_refiner = getattr(runner, "refiner", None)
    nested = bool(counts) and int(params["steps"]) in reusable_counts(
        method, {**params, "steps": counts[0]})
    refiner = None
    measured: list[tuple[int, float]] = []
    done = int(params["steps"]) if nested else 0
    for count in counts:
        level = computation.with_params(steps=count)
        result = cached(level.key)
        if result is None:
            if nested and make_refiner is not None:
                if refiner is None:
                    refiner = progressive.kept_refiner(
                        visitor.state, _refiner_key(computation),
                        lambda: make_refiner(loaded, x, method, target=computation.target))
                work = (lambda r=refiner, lp=dict(level.params):
                        image_result(r.explain(**lp, progress=progress)))
                passes = costs.estimate_passes(method, {**params, "steps": count - done})
            else:
                work = (lambda lp=dict(level.params):
                        image_result(runner.explain(loaded, x, method, target=computation.target,
                                                    progress=progress, **lp)))
                passes = costs.estimate_passes(method, {**params, "steps": count})
            _relabel(progress, f"{count} steps")
            result = _explicit(visitor, page, loaded, computation.device, method, level.key,
                               work, passes, progress)
            result_cache().put(level.key, result)
        done = count
        gap = progressive.completeness_gap(result.metadata)
        if gap is None:
            break
        measured.append((count, gap))
        if gap <= threshold:
            break
    return measured


def _ladder_on_the_service(visitor: Visitor, runner: Engine, loaded, computation: Computation,
                           x: torch.Tensor, request: admission.Request, levels: list[int],
                           progress, on_level) -> ImageResult:
    """The ladder as one ``refine`` request to the engine: the replica keeps the Refiner for
    the length of the request (a later rerun with more steps starts over there; the levels
    already computed come from the result cache), and streams each coarse level as it is
    ready."""
    knob = REFINABLE[computation.method]
    total = levels[-1]
    estimate = admission.admit(visitor, request)
    # Levels already in the result cache are not asked for again: the replica's Refiner
    # starts where the in-process one would, so every level equals the in-process one.
    counts = [c for c in levels
              if c == total or cached(computation.with_params(**{knob: c}).key) is None]

    def keep(count: int, explanation) -> ImageResult:
        result = image_result(explanation)
        result_cache().put(computation.with_params(**{knob: count}).key, result)
        progressive.keep_best(visitor.state, computation.key, result, Level(count, total, knob))
        return result

    def shown(count: int, explanation) -> None:
        result = keep(count, explanation)
        if on_level is not None:
            on_level(result, Level(count, total, knob))
        _relabel(progress, f"{next((c for c in counts if c > count), total)} of {total} {knob}")

    _relabel(progress, f"{counts[0]} of {total} {knob}")
    return _step(visitor, request, estimate, computation.key,
                 lambda: keep(total, runner.refine(
                     loaded, x, computation.method, counts, target=computation.target,
                     on_level=shown, progress=progress, **computation.params)),
                 passes=request.passes, progress=progress)


def scoreboard(visitor: Visitor, loaded, device: str, x: torch.Tensor, digest: str,
               runs: dict, target: int, mask: np.ndarray | None, progress=None,
               page: str = "compare") -> Scoreboard:
    """Deletion/insertion (and, with a mask, localisation) ranking of the methods in ``runs``
    (label -> (cache key, ImageResult)), cached like attributions."""
    key = digest_key("scoreboard", model_identity(loaded), device, digest,
                     sorted(k for k, _ in runs.values()), target, mask is not None)
    hit = cached(key)
    if hit is not None:
        return hit
    attributions = {label: torch.from_numpy(r.attribution)[None] for label, (_, r) in runs.items()}
    runner = engine.for_models(loaded)

    def run_batch(_payloads):
        rows = runner.call("scoreboard", loaded, x, attributions, target=target, mask=mask,
                           progress=progress)
        return [Scoreboard(rows=rows)]

    # Deletion and insertion curves: forward passes only, about a third of a gradient pass.
    passes = max(1, (2 * SCOREBOARD_STEPS * len(runs)) // 3)
    board = admission.submit(visitor, admission.Request(
        page=page, model=loaded.name, device=device, method="scoreboard", key=key, payload=None,
        # Part of a Compare view whose maps already passed the budget: queued, never re-asked.
        run_batch=run_batch, passes=passes, explicit=True), progress=progress)
    result_cache().put(key, board)
    return board


def _explicit(visitor: Visitor, page: str, loaded, device: str, method: str, key,
              work: Callable[[], Any], passes: int, progress=None) -> Any:
    """Model work a page starts with a button of its own (sanity checks): through the same
    queue, rate limit and hard limit; the button press is its explicit confirmation."""
    return admission.submit(visitor, admission.Request(
        page=page, model=loaded.name, device=device, method=method, key=key, payload=None,
        run_batch=lambda _payloads: [work()], passes=passes, explicit=True), progress=progress)


def sanity_key(loaded, device: str, digest: str, methods, mode: str, seed: int,
               method_params: dict, partner) -> str:
    """What the sanity checks' result depends on (the verdict threshold is applied when shown)."""
    return digest_key("sanity", model_identity(loaded), device, digest, list(methods), mode,
                      int(seed), method_params,
                      model_identity(partner) if partner is not None else None)


def sanity_checks(visitor: Visitor, loaded, device: str, x: torch.Tensor, digest: str,
                  methods: list[str], mode: str, seed: int, method_params: dict, partner=None,
                  threshold: float = 0.5, progress=None, page: str = "sanity") -> SanityResult:
    """Parameter randomization (``mode``) and, given ``partner`` (the same architecture trained
    on shuffled labels), data randomization of ``methods`` on one image, from the cache when
    possible; otherwise through the device's queue like every other model request.

    The two tests stand alone: a partner of another architecture is refused before any work
    starts, and a data test that cannot run leaves the parameter test's result standing (in
    ``data_problem``). The parameter test is cached on its own too, so adding or changing the
    partner later does not redo it."""
    key = sanity_key(loaded, device, digest, methods, mode, seed, method_params, partner)
    hit = cached(key)
    if hit is not None:
        return hit
    problem = partner_problem(loaded, partner) if partner is not None else None
    alone_key = sanity_key(loaded, device, digest, methods, mode, seed, method_params, None)
    runner = engine.for_models(loaded, partner)
    # Each map is many model passes: in this process the engine redraws the bar between them,
    # so Stop is honoured within a map, not only between maps (the service reports its own).
    pulse = getattr(progress, "pulse", None) if engine.in_process(runner) else None
    params = {m: {**method_params.get(m, {}), **({"progress": pulse} if pulse else {})}
              for m in methods}

    def stage(label: str):
        _relabel(progress, label)
        return progress

    # One map per method for the trained model and for each step (at most DEFAULT_MAX_STEPS).
    method_passes = sum(costs.estimate_passes(m, method_params.get(m, {})) for m in methods)
    alone = cached(alone_key)
    if alone is None:
        cascade = _explicit(
            visitor, page, loaded, device, f"sanity-{mode}", ("sanity", alone_key),
            lambda: runner.call(
                "parameter_randomization", loaded, x, methods, mode=mode, seed=seed,
                threshold=threshold, method_params=params,
                progress=stage(f"{mode} randomization")),
            passes=method_passes * (DEFAULT_MAX_STEPS + 1), progress=progress)
        alone = SanityResult(cascade)
        result_cache().put(alone_key, alone)
    if partner is None:
        return alone
    if problem is not None:
        return SanityResult(alone.cascade, None, problem)
    cascade = alone.cascade
    try:
        data = _explicit(
            visitor, page, loaded, device, "sanity-data", ("sanity-data", key),
            lambda: runner.call(
                "data_randomization", loaded, partner, x, methods,
                target=cascade.targets.tolist(), threshold=threshold, method_params=params,
                progress=stage(f"data randomization against {partner.name}")),
            passes=2 * method_passes, progress=progress)
    except (CancelledError, admission.OverBudget):
        raise  # Stop and the budget's question are the page's to answer, not a test's failure
    except SaliencyError as exc:
        return SanityResult(cascade, None, f"The data randomization test could not run: {exc}")
    result = SanityResult(cascade, data)
    result_cache().put(key, result)
    return result


# ---- next-word attribution (language models) -------------------------------------------------

#: Generated tokens one request may ask for: the app's own cap, below the library's.
MAX_NEW_TOKENS = 32
MAX_NEW_TOKENS_ENV = "SALIENCY_APP_MAX_NEW_TOKENS"


def max_new_tokens_cap() -> int:
    """Tokens one request may generate on this server (``SALIENCY_APP_MAX_NEW_TOKENS``)."""
    try:
        return max(1, int(os.environ.get(MAX_NEW_TOKENS_ENV, MAX_NEW_TOKENS)))
    except ValueError:
        return MAX_NEW_TOKENS


def generation_computation(loaded, device: str, prompt: str, continuation: str | None,
                           max_new_tokens: int, method: str, params: dict, score: str,
                           contrast: str | None) -> Computation:
    """The Computation of next-word attribution: the prompt and the continuation (None: the
    model's own greedy one of ``max_new_tokens``) are its input; the contrast token is part of
    what is explained."""
    what = {"prompt": prompt, "continuation": continuation,
            "max_new_tokens": None if continuation is not None else int(max_new_tokens)}
    return Computation("text-generation", model_identity(loaded), device,
                       text_digest(digest_key(what)), method, dict(params),
                       NextToken(score, rather_than=contrast))


def generation_passes(method: str, params: dict, tokens: int) -> int:
    """Model passes of a generation request: every method point is one forward pass shared by
    all generated tokens plus one backward per token (batched, but each is a pass's work)."""
    points = costs.estimate_passes(method, params, "text")
    return max(1, points * (1 + max(1, tokens)) // 2)


def explain_generation(visitor: Visitor, loaded, computation: Computation, prompt: str,
                       continuation: str | None, max_new_tokens: int, progress=None,
                       page: str = "text"):
    """``saliency_core.attribute_generation`` for ``computation`` through the result cache,
    the budget and the device's queue, like ``explain_text``. Always computed in this process
    (the engine service has no generation call yet)."""
    from saliency_core.text.generation import attribute_generation

    hit = cached(computation.key)
    if hit is not None:
        return hit
    params = dict(computation.params)

    def run() -> Any:
        return attribute_generation(
            loaded, loaded.tokenizer, prompt, computation.method, continuation=continuation,
            max_new_tokens=max_new_tokens, target=computation.target, progress=progress,
            **params)

    def calibrate(model: costs.CostModel) -> None:
        # Real gradient runs over the prompt and one token, warm: the engine's chunk timings
        # (when the library reports them) teach the cost model this model's pass.
        for _warm_then_measure in range(2):
            timed = _timed_run(lambda: attribute_generation(
                loaded, loaded.tokenizer, prompt, "gradient", max_new_tokens=1))
        model.observe_run(loaded.name, computation.device, token_count(loaded, prompt, None) + 1,
                          *timed, "text")

    tokens = len(loaded.tokenizer(continuation, add_special_tokens=False)["input_ids"]) \
        if continuation else max_new_tokens
    request = admission.Request(
        page=page, model=loaded.name, device=computation.device, method=computation.method,
        key=computation.key, payload=None,
        run_batch=lambda _payloads: [GenerationResult(run())],
        passes=generation_passes(computation.method, params, tokens),
        units=token_count(loaded, prompt, None) + tokens, calibrate=calibrate)
    result = admission.submit(visitor, request, progress=progress)
    result_cache().put(computation.key, result)
    return result
