"""Running the engine for a page: through the shared result cache, with progress reported.

The engine is in this process by default, reached as ``saliency_core.explain`` /
``saliency_core.attribute_text`` at call time (so tests can count model runs by replacing those
attributes). With ``SALIENCY_ENGINE_URL`` set, the same calls go to the engine service
(saliency_core.serve.client, no Ray in the app); progress and Stop work the same through it.
Either way every computation that misses the cache waits its turn in the device's queue
(workbench.jobs.admission, workbench.jobs.scheduler), within the budget and the rate limit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st
import torch

import saliency_core
from saliency_core.evaluation.randomization import DEFAULT_MAX_STEPS
from saliency_core.serve import calls as service_calls
from saliency_core.serve.client import ENGINE_URL_ENV, Client
from workbench.hosting import telemetry
from workbench.jobs import admission as service
from workbench.jobs import costs
from workbench.jobs.results import (
    ImageResult,
    ResultCache,
    SanityResult,
    Scoreboard,
    TextResult,
    configured_cache,
    result_key,
)

# saliency_core.evaluation.scoreboard's default number of deletion/insertion steps, for the cost estimate.
SCOREBOARD_STEPS = 32


@st.cache_resource(show_spinner=False)
def result_cache() -> ResultCache:
    cache = configured_cache()
    telemetry.RESULT_CACHE_BYTES.set_function(lambda: cache.size_bytes)
    return cache


@st.cache_resource(show_spinner=False)
def _client(url: str) -> Client:
    return Client(url)


# Why work on some models stays in the app although a service is configured.
UPLOADED_STAYS_HERE = ("Computed in this app, not on the engine service: uploaded weights stay "
                       "in your session and are never sent to the service.")


def _uploaded(loaded) -> bool:
    return getattr(loaded, "source", None) == "uploaded"


def engine_client(*models) -> Client | None:
    """The engine service's client when one is configured, else None (in-process engine).
    Work on an uploaded model (one of ``models``) stays in-process: the weights live only in
    this app's memory, for their owner's session (runs_here_because says so on the page)."""
    url = os.environ.get(ENGINE_URL_ENV, "").strip()
    if not url or any(_uploaded(m) for m in models):
        return None
    return _client(url)


def runs_here_because(loaded) -> str | None:
    """What the page says when a service is configured but this model's work runs here."""
    configured = bool(os.environ.get(ENGINE_URL_ENV, "").strip())
    return UPLOADED_STAYS_HERE if configured and _uploaded(loaded) else None


def engine_explain(loaded, x: torch.Tensor, method: str, target, **options):
    client = engine_client(loaded)
    if client is None:
        return saliency_core.explain(loaded, x, method, target=target, **options)
    return client.explain(loaded.name, x, method, target=target, **options)


def engine_attribute_text(loaded, text: str, method: str, target, **options):
    client = engine_client(loaded)
    if client is None:
        return saliency_core.attribute_text(loaded, loaded.tokenizer, text, method,
                                            target=target, **options)
    return client.attribute_text(loaded.name, text, method, target=target, **options)


def engine_call(function: str, *args, **kwargs):
    """One of the engine's named calls (saliency_core.serve.calls: several targets, the
    scoreboard, the sanity checks) on the service when one is configured, else in this
    process; the same function runs either way."""
    client = engine_client(*args)
    if client is not None:
        return client.call(function, *args, **kwargs)
    options = {k: kwargs.pop(k) for k in service_calls.ENGINE_OPTIONS if k in kwargs}
    return service_calls.run_call(function, list(args), kwargs, options)


def engine_refine(loaded, x: torch.Tensor, method: str, target, params: dict, counts: list[int],
                  progress=None, on_level=None):
    """The levels of a progressive run (service_calls.refine_levels) on the service: only
    used with one; in-process the page keeps a Refiner of its own across reruns."""
    client = engine_client(loaded)
    if client is None:
        raise RuntimeError("engine_refine needs SALIENCY_ENGINE_URL")
    return client.refine(loaded.name, x, method, counts, target=target, on_level=on_level,
                         progress=progress, **params)


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


def image_key(loaded, device: str, digest: str, method: str, params: dict, target) -> str:
    return result_key("image", model_identity(loaded), device, digest, method, params, target)


def text_key(loaded, device: str, text: str, method: str, params: dict, target) -> str:
    return result_key("text", model_identity(loaded), device,
                      hashlib.sha256(text.encode()).hexdigest(), method, params, target)


def cached(key: str):
    return result_cache().get(key)


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


# Points per calibration batch: the many-point methods (IG, SmoothGrad) run in chunks like this,
# where one pass costs much less than a lone one.
CALIBRATION_POINTS = 8


def _calibrate_image(loaded, x: torch.Tensor) -> Callable[[], float]:
    """Seconds of one gradient pass of this model on this input size (the cost model's unit),
    measured on a warm model in a batch, where the engine runs (the service's replica reports
    its own compute time). In-process it times the engine's own path, not the counted
    ``saliency_core.explain`` attribute."""
    from saliency_core.api import explain as library_explain

    def measure() -> float:
        client = engine_client(loaded)
        run = (lambda inputs: client.explain(loaded.name, inputs, "gradient")) if client else \
            (lambda inputs: library_explain(loaded, inputs, "gradient"))
        run(x)  # warm-up: first-call allocations, lazy modules
        return _pass_seconds(run(x.repeat(CALIBRATION_POINTS, 1, 1, 1)).metadata)
    return measure


def _pass_seconds(meta: dict) -> float:
    return float(meta.get("time_s", 0.0)) / max(1, int(meta.get("passes", 1)))


def image_request(loaded, device: str, x: torch.Tensor, method: str, params: dict, target,
                  key: str, page: str, progress=None, cancel=None) -> service.Request:
    """The scheduler's request for one image: batched with other sessions' images that use
    the same model, method, settings and target."""
    def run_batch(inputs):
        batch = torch.cat(list(inputs), dim=0)
        explanation = engine_explain(loaded, batch, method, target, progress=progress,
                                     cancel=cancel, **params)
        return [image_result(explanation, i, len(inputs)) for i in range(len(inputs))]

    return service.Request(
        page=page, model=loaded.name, device=device, method=method, key=key, payload=x,
        run_batch=run_batch, passes=costs.estimate_passes(method, params, "image"),
        batch_key=result_key("image-batch", model_identity(loaded), device, method, params, target,
                             tuple(x.shape[1:])),
        calibrate=_calibrate_image(loaded, x))


def explain_image(loaded, device: str, x: torch.Tensor, digest: str, method: str, params: dict,
                  target, progress=None, cancel=None, page: str = "image") -> ImageResult:
    """Attribution for one preprocessed image [1, C, H, W], from the cache when possible;
    otherwise through the device's queue."""
    key = image_key(loaded, device, digest, method, params, target)
    hit = result_cache().get(key)
    if hit is not None:
        return hit
    result = service.submit(image_request(loaded, device, x, method, params, target, key, page,
                                          progress, cancel), progress=progress)
    result_cache().put(key, result)
    return result


def _calibrate_text(loaded, text: str, params: dict) -> Callable[[], float]:
    from saliency_core.text.classifier import attribute_text as library_attribute_text

    max_length = params.get("max_length")

    def measure() -> float:
        client = engine_client(loaded)
        for _warm_then_measure in range(2):
            out = client.attribute_text(loaded.name, text, "gradient", max_length=max_length) \
                if client else library_attribute_text(loaded, loaded.tokenizer, text,
                                                      "gradient", max_length=max_length)
        return _pass_seconds(out.metadata)
    return measure


def token_count(loaded, text: str, max_length: int | None) -> int:
    try:
        count = len(loaded.tokenizer(text)["input_ids"])
    except Exception:  # noqa: BLE001 - only an estimate: fall back to a word count
        count = len(text.split()) + 2
    return min(count, max_length) if max_length else count


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


def text_request(loaded, device: str, text: str, method: str, params: dict, target, key: str,
                 page: str = "text", progress=None, cancel=None) -> service.Request:
    def run_batch(texts):
        return [text_result(engine_attribute_text(loaded, texts[0], method, target,
                                                  progress=progress, cancel=cancel, **params))]

    tokens = token_count(loaded, text, params.get("max_length"))
    # The cost model's unit for text is one token: passes cost in proportion to the length.
    return service.Request(
        page=page, model=loaded.name, device=device, method=method, key=key, payload=text,
        run_batch=run_batch,
        passes=costs.estimate_passes(method, {k: v for k, v in params.items()
                                              if k != "max_length"}, "text"),
        units=tokens, calibrate=_calibrate_text(loaded, text, params))


def explain_text(loaded, device: str, text: str, method: str, params: dict, target,
                 progress=None, cancel=None, page: str = "text") -> TextResult:
    key = text_key(loaded, device, text, method, params, target)
    hit = result_cache().get(key)
    if hit is not None:
        return hit
    result = service.submit(text_request(loaded, device, text, method, params, target, key,
                                         page, progress, cancel), progress=progress)
    result_cache().put(key, result)
    return result


def scoreboard(loaded, device: str, x: torch.Tensor, digest: str, runs: dict, target: int,
               mask: np.ndarray | None, progress=None, page: str = "compare") -> Scoreboard:
    """Deletion/insertion (and, with a mask, localisation) ranking of the methods in ``runs``
    (label -> (cache key, ImageResult)), cached like attributions."""
    key = result_key("scoreboard", model_identity(loaded), device, digest, sorted(k for k, _ in runs.values()),
                     target, mask is not None)
    hit = result_cache().get(key)
    if hit is not None:
        return hit
    attributions = {label: torch.from_numpy(r.attribution)[None] for label, (_, r) in runs.items()}

    def run_batch(_payloads):
        rows = engine_call("scoreboard", loaded, x, attributions, target=target, mask=mask,
                           progress=progress)
        return [Scoreboard(rows=rows)]

    # Deletion and insertion curves: forward passes only, about a third of a gradient pass.
    passes = max(1, (2 * SCOREBOARD_STEPS * len(runs)) // 3)
    board = service.submit(service.Request(
        page=page, model=loaded.name, device=device, method="scoreboard", key=key, payload=None,
        # Part of a Compare view whose maps already passed the budget: queued, never re-asked.
        run_batch=run_batch, passes=passes, explicit=True), progress=progress)
    result_cache().put(key, board)
    return board


def scheduled_step(request: service.Request, estimate_s: float | None, key, work,
                   passes: int, progress=None) -> Any:
    """One step of an admitted request (a level of a progressive run): queued like any other
    work, without a second budget check or rate-limit charge."""
    step = service.Request(
        page=request.page, model=request.model, device=request.device, method=request.method,
        key=key, payload=None, run_batch=lambda _payloads: [work()], passes=passes)
    share = None if estimate_s is None else estimate_s * passes / max(1, request.passes)
    return service.schedule(step, share, progress)


def scheduled(page: str, loaded, device: str, method: str, key, work: Callable[[], Any],
              passes: int, progress=None) -> Any:
    """Other model work a page starts with a button of its own (sanity checks): through the
    same queue, rate limit and hard limit; the button press is its explicit confirmation."""
    return service.submit(service.Request(
        page=page, model=loaded.name, device=device, method=method, key=key, payload=None,
        run_batch=lambda _payloads: [work()], passes=passes, explicit=True), progress=progress)


def sanity_key(loaded, device: str, digest: str, methods, mode: str, seed: int,
               method_params: dict, partner) -> str:
    """What the sanity checks' result depends on (the verdict threshold is applied when shown)."""
    return result_key("sanity", model_identity(loaded), device, digest, list(methods), mode,
                      int(seed), method_params,
                      model_identity(partner) if partner is not None else None)


def sanity_checks(loaded, device: str, x: torch.Tensor, digest: str, methods: list[str],
                  mode: str, seed: int, method_params: dict, partner=None, threshold: float = 0.5,
                  progress=None, page: str = "sanity") -> SanityResult:
    """Parameter randomization (``mode``) and, given ``partner`` (the same architecture trained
    on shuffled labels), data randomization of ``methods`` on one image, from the cache when
    possible; otherwise through the device's queue like every other model request."""
    key = sanity_key(loaded, device, digest, methods, mode, seed, method_params, partner)
    hit = result_cache().get(key)
    if hit is not None:
        return hit
    # Each map is many model passes: in this process the engine redraws the bar between them,
    # so Stop is honoured within a map, not only between maps (the service reports its own).
    pulse = getattr(progress, "pulse", None) if engine_client(loaded, partner) is None else None
    params = {m: {**method_params.get(m, {}), **({"progress": pulse} if pulse else {})}
              for m in methods}

    def stage(label: str):
        if progress is not None and hasattr(progress, "relabel"):
            progress.relabel(label)
        return progress

    # One map per method for the trained model and for each step (at most DEFAULT_MAX_STEPS).
    method_passes = sum(costs.estimate_passes(m, method_params.get(m, {})) for m in methods)
    cascade = scheduled(
        page, loaded, device, f"sanity-{mode}", ("sanity", key),
        lambda: engine_call(
            "parameter_randomization", loaded, x, methods, mode=mode, seed=seed,
            threshold=threshold, method_params=params, progress=stage(f"{mode} randomization")),
        passes=method_passes * (DEFAULT_MAX_STEPS + 1), progress=progress)
    data = None
    if partner is not None:
        data = scheduled(
            page, loaded, device, "sanity-data", ("sanity-data", key),
            lambda: engine_call(
                "data_randomization", loaded, partner, x, methods, target=cascade.targets.tolist(),
                threshold=threshold, method_params=params,
                progress=stage(f"data randomization against {partner.name}")),
            passes=2 * method_passes, progress=progress)
    result = SanityResult(cascade, data)
    result_cache().put(key, result)
    return result

