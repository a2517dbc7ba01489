"""``saliency_core.remote.Client``: the documented name of the engine service's client.

The client lives in ``saliency_core.serve.client`` with the rest of serving; this module keeps
the import path that users' code and the docs name.
"""

from __future__ import annotations

from saliency_core.serve.client import ENGINE_URL_ENV, Client, EngineUnavailableError

__all__ = ["ENGINE_URL_ENV", "Client", "EngineUnavailableError"]
