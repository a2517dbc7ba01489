"""``Client(url)``: the library's attribute / explain / attribute_text, computed by the engine
service (``python -m saliency_core serve``) instead of in this process.

The calls take a model *name* (or a LoadedModel, whose name is used) because the service loads
the model itself, from its own model cache, on its own device. Results are the same objects the
library returns, bit for bit on the CPU. ``progress`` and ``cancel`` work as in-process: the
service streams progress, and a cancel (or an exception raised in ``progress``, as Streamlit's
Stop does) closes the connection, which makes the service stop the run.

Only the standard library and saliency_core.serve.wire are used: no Ray in the caller's process.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse

import torch

from saliency_core import errors
from saliency_core.errors import CancelledError, SaliencyError
from saliency_core.serve import wire

ENGINE_URL_ENV = "SALIENCY_ENGINE_URL"


class EngineUnavailableError(SaliencyError):
    """The engine service cannot be reached, or lost the request more often than we retry."""


def _model_name(model) -> str:
    name = model if isinstance(model, str) else getattr(model, "name", None)
    if not isinstance(name, str) or not name:
        raise SaliencyError("the engine service needs a model name (or a loaded model)")
    return name


def _error_class(kind: str) -> type[SaliencyError]:
    found = getattr(errors, kind, None)
    if isinstance(found, type) and issubclass(found, SaliencyError):
        return found
    return SaliencyError


class Client:
    def __init__(self, url: str, connect_timeout_s: float = 3.0, read_timeout_s: float = 60.0,
                 retries: int = 2, retry_wait_s: float = 1.0):
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise SaliencyError(f"the engine URL {url!r} is not an http(s) URL")
        self.url = url.rstrip("/")
        self._parsed = parsed
        self._base = parsed.path.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        # Heartbeats come every second; a minute of silence means the service is stuck.
        self.read_timeout_s = read_timeout_s
        self.retries = retries
        self.retry_wait_s = retry_wait_s

    # ---- the library's calls --------------------------------------------------------------

    def attribute(self, model, inputs: torch.Tensor, method: str, target="predicted",
                  **params) -> torch.Tensor:
        return self._run("attribute", model, method, target, params, inputs=inputs)

    def explain(self, model, inputs: torch.Tensor, method: str, target="predicted", **params):
        return self._run("explain", model, method, target, params, inputs=inputs)

    def attribute_text(self, model, text: str, method: str, target="predicted", **params):
        """As saliency_core.attribute_text, with the service's own tokenizer for the model."""
        return self._run("attribute_text", model, method, target, params, text=text)

    def refine(self, model, inputs: torch.Tensor, method: str, counts: list[int],
               target="predicted", on_level=None, **params):
        """A progressive run (service_calls.refine_levels) on the service: the Explanation at
        the last of ``counts``; ``on_level(count, explanation)`` gets each coarser level as
        soon as the service has it."""
        counts = [int(c) for c in counts]

        def level(index: int, explanation) -> None:
            if on_level is not None and index < len(counts):
                on_level(counts[index], explanation)

        return self._run("refine", model, method, target, params, inputs=inputs,
                         counts=counts, on_level=level)

    def call(self, function: str, *args, **kwargs):
        """One of the engine's named calls (saliency_core.serve.calls.CALLS), e.g.
        ``call("attribute_targets", "resnet50", x, method="gradcam", top_k=5)``: models go by
        name: a LoadedModel or ``model_ref(name)``, loaded by the service from its own cache.
        The result is what the call returns in-process, bit for bit on the CPU."""
        progress = kwargs.pop("progress", None)
        cancel = kwargs.pop("cancel", None)
        try:
            body = wire.encode_call(function, list(args), kwargs)
        except TypeError as exc:
            raise SaliencyError(f"{function}: {exc}") from None
        return self._exchange(body, progress, cancel)

    def health(self) -> dict:
        conn = None
        try:
            conn = self._connection()
            conn.request("GET", f"{self._base}/health")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise EngineUnavailableError(f"the engine service at {self.url} answers "
                                             f"{response.status}")
            return json.loads(body)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            if conn is not None:
                conn.close()

    # ---- transport ------------------------------------------------------------------------

    def _run(self, op, model, method, target, params, inputs=None, text=None, counts=None,
             on_level=None):
        params = dict(params)
        progress = params.pop("progress", None)
        cancel = params.pop("cancel", None)
        if inputs is not None and not isinstance(inputs, torch.Tensor):
            raise SaliencyError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
        body = wire.encode_request(op, _model_name(model), method, target, params,
                                   inputs=inputs, text=text, counts=counts)
        return self._exchange(body, progress, cancel,
                              inputs.device if inputs is not None else None, on_level)

    def _exchange(self, body: bytes, progress, cancel, device=None, on_level=None):
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_wait_s * attempt)
            try:
                result = self._once(body, progress, cancel, on_level)
            except (ConnectionRefusedError, socket.gaierror) as exc:
                raise self._unreachable(exc) from None
            except (OSError, http.client.HTTPException, _Retry) as exc:
                # The replica died or the proxy lost it: safe to ask again, the calls are pure.
                last = exc
                continue
            if device is not None and isinstance(result, torch.Tensor):
                return result.to(device)
            if device is not None and hasattr(result, "attribution"):
                result.attribution = result.attribution.to(device)
            return result
        raise EngineUnavailableError(
            f"The engine service at {self.url} lost the request {self.retries + 1} times "
            f"(a replica stopped or restarted?): {last}. Try again in a moment.")

    def _once(self, body: bytes, progress, cancel, on_level=None):
        conn = self._connection()
        try:
            conn.request("POST", f"{self._base}/run", body=body,
                         headers={"Content-Type": "application/octet-stream"})
            response = conn.getresponse()
            if response.status >= 500:
                raise _Retry(f"HTTP {response.status}: {response.read()[:300]!r}")
            if response.status != 200:
                message = response.read()[:2000].decode(errors="replace")
                try:
                    message = json.loads(message).get("error", message)
                except (ValueError, AttributeError):
                    pass
                raise SaliencyError(f"the engine service refused the request: {message}")
            last, levels = None, 0
            while True:
                if _cancelled(cancel):
                    raise CancelledError("stopped")
                item = wire.read_frame(response.read)
                if item is None:
                    raise _Retry("the reply ended without a result")
                kind, payload = item
                if kind == wire.PROGRESS:
                    doc = json.loads(payload)
                    last = (int(doc["done"]), int(doc["total"]))
                if progress is not None and last is not None and kind in (wire.PROGRESS,
                                                                          wire.HEARTBEAT):
                    # Heartbeats repeat the last figures: a caller such as Streamlit gets its
                    # chance to interrupt (Stop) even while the engine is between reports.
                    progress(*last)
                elif kind == wire.LEVEL:
                    if on_level is not None:
                        on_level(levels, wire.decode_result(payload))
                    levels += 1
                elif kind == wire.RESULT:
                    return wire.decode_result(payload)
                elif kind == wire.ERROR:
                    doc = json.loads(payload)
                    raise _error_class(str(doc.get("kind")))(str(doc.get("message")))
        finally:
            # Closing mid-stream is how Stop reaches the replica.
            conn.close()

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parsed.scheme == "https" else \
            http.client.HTTPConnection
        conn = cls(self._parsed.hostname or "localhost", self._parsed.port, timeout=self.connect_timeout_s)
        conn.connect()
        conn.sock.settimeout(self.read_timeout_s)
        return conn

    def _unreachable(self, exc: BaseException) -> EngineUnavailableError:
        return EngineUnavailableError(
            f"The engine service at {self.url} is not reachable ({exc}). Start it with "
            f"`make serve-engine`, or unset {ENGINE_URL_ENV} to compute in the app itself.")


class _Retry(Exception):
    """A failure of the service, not of the request."""


def model_ref(name: str) -> wire.ModelRef:
    """A model argument of ``Client.call`` given by name."""
    return wire.ModelRef(_model_name(name))


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())
