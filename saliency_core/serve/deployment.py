"""The attribution engine as a Ray Serve deployment: ``python -m saliency_core serve``.

One deployment, ``Engine``, loads models from the model cache (``SALIENCY_CACHE``: a shared
read-only volume in a cluster) onto its device and answers the library's three calls over HTTP:

- ``GET  /health`` -> JSON: device, loaded models, batching settings.
- ``POST /run``    -> a request from :func:`saliency_core.serve.wire.encode_request` (attribute,
  explain, attribute_text, refine: the levels of a progressive run) or
  :func:`saliency_core.serve.wire.encode_call` (the named calls of saliency_core/serve/calls.py:
  several targets, scoreboard, sanity checks); the reply is a stream of frames
  (saliency_core/serve/wire.py): progress while the engine runs, a heartbeat every second, each
  coarse level of a progressive run, then the result or an error. When the client goes away (the user pressed Stop), Ray
  Serve cancels the request and the engine stops within one chunk of model passes.

Requests from different users that share model, method, parameters and input shape are
combined by ``@serve.batch`` into one engine call (one pass over a bigger batch) and split
again. Requests whose result depends on their position in a batch (seeded noise: SmoothGrad,
random baselines) run alone, so every answer equals what the library computes in-process.

Everything about scale is configuration (:class:`EngineConfig`): replicas or autoscaling
bounds, ``max_ongoing_requests``, CPUs and (fractional) GPUs per replica, batch size and wait.
Ray is imported only here, never by the app or the rest of the library.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from saliency_core import computation
from saliency_core.errors import CancelledError, SaliencyError
from saliency_core.serve import calls as service_calls
from saliency_core.serve import wire
from saliency_core.serve.config import EngineConfig

log = logging.getLogger(__name__)

APP_NAME = "saliency"
HEARTBEAT_S = 1.0
POLL_S = 0.05
MAX_REQUEST_BYTES = 256 * 2**20  # a batch of large images; nothing legitimate is bigger


class Job:
    """One HTTP request inside a replica: what to compute, its progress and its Stop flag."""

    def __init__(self, request: dict):
        self.request = request
        self.cancel = threading.Event()
        self.progress: tuple[int, int] | None = None
        self.levels: deque = deque()  # coarse results of a progressive run, not yet sent
        self.batch_key = batch_key(request)


def batch_key(request: dict) -> str | None:
    """Requests with equal keys can run as one engine call; None means: run alone. Each
    request brings its own targets, so a batch may mix targets of the same kind."""
    if request["op"] not in ("attribute", "explain"):
        return None
    x = request["inputs"]
    target_kind = _target_kind(request["target"])
    if target_kind is None:
        return None
    return computation.batch_key(request["op"], request["model"], request["method"],
                                 request["params"], x.shape[1:], x.dtype, target_kind)


def _target_kind(target) -> str | None:
    """"predicted" or "classes" (indices or names, whose lists concatenate); None for a
    contrast, which runs alone."""
    from saliency_core.targets import PREDICTED

    if target == PREDICTED:
        return PREDICTED
    if isinstance(target, (int, str)) or (isinstance(target, list) and
                                          all(isinstance(t, (int, str)) for t in target)):
        return "classes"
    return None


def _targets(request: dict, n: int) -> list:
    target = request["target"]
    if isinstance(target, list):
        return target
    return [target] * n


def split_explanation(ex, counts: list[int]):
    """One batched Explanation -> one per request, per-sample metadata lists split too."""
    from saliency_core.api import Explanation

    out, start = [], 0
    total = sum(counts)
    for n in counts:
        sl = slice(start, start + n)
        meta = {k: (v[sl] if isinstance(v, list) and len(v) == total else v)
                for k, v in ex.metadata.items()}
        meta["batched_requests"] = len(counts)
        out.append(Explanation(attribution=ex.attribution[sl], target=ex.target[sl],
                               score=ex.score[sl], predicted=ex.predicted[sl],
                               probabilities=ex.probabilities[sl], metadata=meta))
        start += n
    return out


class Engine:
    """The replica: a few loaded models, and the engine calls run in worker threads."""

    def __init__(self, torch_threads: int | None = None, model_cache_size: int = 4):
        import torch

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model_cache_size = model_cache_size
        self._models: OrderedDict = OrderedDict()
        self._models_lock = threading.Lock()
        self.max_batch_size = 8
        self.batch_wait_timeout_s = 0.01
        # What /health reports, so operators (and tests) see batching and Stop at work.
        self.counts = {"requests": 0, "engine_calls": 0, "cancelled": 0, "failed": 0}

    def reconfigure(self, user_config: dict) -> None:
        self.max_batch_size = int(user_config.get("max_batch_size", self.max_batch_size))
        self.batch_wait_timeout_s = float(user_config.get("batch_wait_timeout_s",
                                                          self.batch_wait_timeout_s))
        # @serve.batch's wrapper carries these setters; its type stubs do not say so.
        self.batched.set_max_batch_size(self.max_batch_size)  # type: ignore[attr-defined]
        self.batched.set_batch_wait_timeout_s(self.batch_wait_timeout_s)  # type: ignore[attr-defined]

    def model(self, name: str):
        from saliency_core import load_model

        with self._models_lock:
            if name in self._models:
                self._models.move_to_end(name)
                return self._models[name]
            loaded = load_model(name, device=self.device)
            self._models[name] = loaded
            while len(self._models) > self.model_cache_size:
                self._models.popitem(last=False)
            return loaded

    # ---- HTTP ----------------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        if request.method == "GET" and path == "health":
            return JSONResponse({"status": "ok", "device": self.device, "pid": os.getpid(),
                                 "models": list(self._models), "counts": self.counts,
                                 "max_batch_size": self.max_batch_size,
                                 "batch_wait_timeout_s": self.batch_wait_timeout_s})
        if request.method == "POST" and path == "run":
            if int(request.headers.get("content-length") or 0) > MAX_REQUEST_BYTES:
                return JSONResponse({"error": f"requests are limited to "
                                     f"{MAX_REQUEST_BYTES // 2**20} MB"}, status_code=413)
            try:
                job = Job(wire.decode_request(await request.body()))
            except SaliencyError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return StreamingResponse(self._stream(job), media_type="application/octet-stream")
        return JSONResponse({"error": "not found: use GET /health or POST /run"}, status_code=404)

    async def _stream(self, job: Job):
        task = asyncio.ensure_future(self.batched(job))
        sent, last_beat = None, time.monotonic()
        try:
            while not task.done() or job.levels:
                await asyncio.wait({task}, timeout=POLL_S)
                if job.levels:
                    yield wire.frame(wire.LEVEL, wire.encode_result(job.levels.popleft()))
                elif job.progress is not None and job.progress != sent:
                    sent = job.progress
                    yield wire.json_frame(wire.PROGRESS, {"done": sent[0], "total": sent[1]})
                elif time.monotonic() - last_beat > HEARTBEAT_S:
                    last_beat = time.monotonic()
                    yield wire.frame(wire.HEARTBEAT)
            try:
                outcome = task.result()
            except Exception as exc:  # noqa: BLE001 - becomes an error frame
                outcome = exc
            if isinstance(outcome, BaseException):
                yield wire.json_frame(wire.ERROR, error_doc(outcome))
            else:
                yield wire.frame(wire.RESULT, wire.encode_result(outcome))
        finally:
            # Reached on a normal end and when Serve cancels the request because the client
            # disconnected: then the engine sees the flag at its next chunk and stops.
            job.cancel.set()

    # ---- batching ------------------------------------------------------------------------

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def batched(self, jobs: list[Job]) -> list:
        groups: OrderedDict = OrderedDict()
        for i, job in enumerate(jobs):
            groups.setdefault(job.batch_key if job.batch_key is not None else ("alone", i),
                              []).append(job)
        outcomes = {}
        for group in groups.values():
            results = await asyncio.to_thread(self._run_group, group)
            outcomes.update({id(job): r for job, r in zip(group, results)})
        return [outcomes[id(job)] for job in jobs]

    def _run_group(self, group: list[Job]) -> list:
        self.counts["requests"] += len(group)
        self.counts["engine_calls"] += 1
        try:
            results = [self._run_one(group[0])] if len(group) == 1 else self._run_together(group)
        except BaseException as exc:  # noqa: BLE001 - every request hears about it
            results = [exc] * len(group)
        for r in results:
            if isinstance(r, CancelledError):
                self.counts["cancelled"] += 1
            elif isinstance(r, BaseException):
                self.counts["failed"] += 1
        return results

    def _engine_options(self, group: list[Job]) -> dict:
        # A shared run stops only when every user in it has stopped.
        def stopped() -> bool:
            return all(j.cancel.is_set() for j in group)

        def progress(done: int, total: int) -> None:
            for job in group:
                job.progress = (done, total)
            # Calls that take no ``cancel`` (the scoreboard) still report progress: stopping
            # there is how Stop reaches them, as Streamlit's Stop does in-process.
            if stopped():
                raise CancelledError("stopped")

        return {"progress": progress, "cancel": stopped}

    def _run_one(self, job: Job):
        import saliency_core as sc

        r = job.request
        try:
            if r["op"] == "call":
                return self._run_call(job)
            loaded = self.model(r["model"])
            options = {**r["params"], **self._engine_options([job])}
            if r["op"] == "refine":
                return service_calls.refine_levels(
                    loaded, r["inputs"].to(self.device), r["method"], r["target"], r["params"],
                    r["counts"], self._engine_options([job]),
                    on_level=lambda _count, ex: job.levels.append(ex))
            if r["op"] == "attribute_text":
                return sc.attribute_text(loaded, loaded.tokenizer, r["text"], r["method"],
                                         target=r["target"], **options)
            call = sc.explain if r["op"] == "explain" else sc.attribute
            return call(loaded, r["inputs"].to(self.device), r["method"], target=r["target"],
                        **options)
        except BaseException as exc:  # noqa: BLE001 - reported to the client as a frame
            return exc

    def _run_call(self, job: Job):
        r = job.request

        def resolve(value):
            return self.model(value.name) if isinstance(value, wire.ModelRef) else value

        args = [resolve(a) for a in r["args"]]
        kwargs = {k: resolve(v) for k, v in r["kwargs"].items()}
        return service_calls.run_call(r["function"], args, kwargs, self._engine_options([job]),
                                      device=self.device)

    def _run_together(self, group: list[Job]) -> list:
        import torch

        import saliency_core as sc

        first = group[0].request
        loaded = self.model(first["model"])
        counts = [j.request["inputs"].shape[0] for j in group]
        x = torch.cat([j.request["inputs"] for j in group]).to(self.device)
        target: Any = first["target"] if _target_kind(first["target"]) == "predicted" else \
            [t for j, n in zip(group, counts) for t in _targets(j.request, n)]
        options = {**first["params"], **self._engine_options(group)}
        ex = sc.explain(loaded, x, first["method"], target=target, **options)
        parts = split_explanation(ex, counts)
        return [p if j.request["op"] == "explain" else p.attribution for j, p in zip(group, parts)]


def error_doc(exc: BaseException) -> dict:
    """What the client needs to raise the same kind of error; internals stay in the log."""
    if isinstance(exc, CancelledError):
        return {"kind": "CancelledError", "message": str(exc) or "stopped"}
    if isinstance(exc, SaliencyError):
        return {"kind": type(exc).__name__, "message": str(exc)}
    log.error("engine request failed", exc_info=exc)
    # The message may name server paths or internals: the details stay in the replica's log.
    return {"kind": "EngineError",
            "message": f"the engine failed ({type(exc).__name__}); the service log has details"}


def build_app(config: EngineConfig | dict | None = None, cluster_gpus: float = 0.0):
    """The Serve application; also the import path for ``serve run`` and KubeRay
    (``saliency_core.serve.deployment:app_builder``)."""
    if not isinstance(config, EngineConfig):
        config = EngineConfig.from_dict(dict(config or {}))
    deployment = serve.deployment(Engine, name="Engine", **config.deployment_options(cluster_gpus))
    return deployment.bind(torch_threads=config.torch_threads,  # type: ignore[attr-defined]
                           model_cache_size=config.model_cache_size)


def app_builder(args: dict):
    """Application builder for Serve config files: ``args`` are EngineConfig fields."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0.0) if ray.is_initialized() else 0.0
    return build_app(EngineConfig.from_dict(dict(args)), cluster_gpus=gpus)


def config_summary(config: EngineConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True)
