"""The app's engine: one object for all model work, chosen from the configuration.

In this process (saliency_core.engines.LocalEngine) by default; with ``SALIENCY_ENGINE_URL``
set, the engine service's client (saliency_core.serve.client.Client, the same calls). The one
exception: work on an uploaded model stays in this process, because its weights live only in
this app's memory, for their owner's session (``runs_here_because`` is what the page says).

Tests (and anything else) put another engine in its place with ``use``: a wrapper that counts
runs, or a fake, without replacing library functions.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from saliency_core.engines import Engine, LocalEngine
from saliency_core.serve.client import ENGINE_URL_ENV, Client
from workbench.jobs.shared import shared

UPLOADED_STAYS_HERE = ("Computed in this app, not on the engine service: uploaded weights stay "
                       "in your session and are never sent to the service.")

_installed: Engine | None = None
_measuring = threading.local()


@shared
def local() -> LocalEngine:
    return LocalEngine()


@shared
def _client(url: str) -> Client:
    return Client(url)


def configured() -> Engine:
    """The engine the configuration names (or the one installed with ``use``): the same
    object for as long as the setting holds."""
    if _installed is not None:
        return _installed
    url = os.environ.get(ENGINE_URL_ENV, "").strip()
    return _client(url) if url else local()


def use(engine: Engine | None) -> Engine | None:
    """Put ``engine`` in place of the configured one (None: back to the configuration);
    returns the one installed before."""
    global _installed
    previous, _installed = _installed, engine
    return previous


def in_process(engine: Engine) -> bool:
    """Whether ``engine`` computes here, so arguments that cannot cross the wire (callables,
    uploaded weights) may be given to it."""
    return not isinstance(engine, Client)


def _uploaded(loaded) -> bool:
    return getattr(loaded, "source", None) == "uploaded"


def for_models(*models) -> Engine:
    """The engine for work on ``models``: the configured one, except that uploaded weights
    are never sent to a service."""
    engine = configured()
    if not in_process(engine) and any(_uploaded(m) for m in models if m is not None):
        return local()
    return engine


def runs_here_because(loaded) -> str | None:
    """What the page says when a service is configured but this model's work runs here."""
    return UPLOADED_STAYS_HERE if for_models(loaded) is not configured() else None


@contextlib.contextmanager
def measuring() -> Iterator[None]:
    """Marks the engine calls of the cost model's calibration, which are no page's request
    (an engine that counts runs leaves them out)."""
    before = getattr(_measuring, "on", False)
    _measuring.on = True
    try:
        yield
    finally:
        _measuring.on = before


def measuring_now() -> bool:
    return getattr(_measuring, "on", False)
