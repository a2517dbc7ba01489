"""What one attribution depends on, as a value: :class:`Computation` (model identity, device,
input digest, method, settings, target) and the keys derived from it.

The app builds one per request and hands it down instead of the six values it is made of; the
result cache, progressive levels and the device queue read their keys from it. The engine
service (saliency_core.serve.deployment) and the app's queue decide which requests may share
one batched pass with the same rule, :func:`batch_key`, so a request's answer never depends on
where it was computed or what it was batched with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from saliency_core.targets import target_key

# Baselines drawn at random per input: a batch would draw them for its other inputs too, so
# the answer would depend on what the request was batched with.
RANDOM_BASELINES = ("uniform", "gaussian")


def digest_key(*parts: Any) -> str:
    """A stable text key; dicts are sorted so parameter order never matters."""
    return json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, eq=True)
class Computation:
    """One attribution request, independent of who asks and where it runs.

    ``task`` is "image" or "text"; ``model`` is the model's identity (its name, and for
    uploaded weights their hash, so two uploads under one name never share results);
    ``input_digest`` a content hash of the input as the model sees it.
    """

    task: str
    model: str
    device: str
    input_digest: str
    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    target: Any = "predicted"

    @property
    def key(self) -> str:
        """The result cache's key: equal computations share one cached result."""
        return digest_key(self.task, self.model, self.device, self.input_digest, self.method,
                          dict(self.params), target_key(self.target))

    def with_params(self, **changes: Any) -> Computation:
        """The same request with some settings changed (a coarser level of a progressive run)."""
        return replace(self, params={**self.params, **changes})

    def batch_key(self, input_shape: Sequence[int], dtype: Any = None) -> str | None:
        """Requests with equal keys may run as one batched pass: one target for the whole
        batch, so the target itself is part of the key. None: run alone."""
        return batch_key("explain", [self.model, self.device], self.method, self.params,
                         input_shape, dtype, target_key(self.target))


def batchable(method: str) -> bool:
    """Whether the method's answer for an input is the same alone and inside a batch."""
    from saliency_core.errors import SaliencyError
    from saliency_core.methods import get

    try:
        return get(method).batchable
    except SaliencyError:
        return False  # an unknown name runs alone and fails with its own message


def batch_key(op: str, model: Any, method: str, params: Mapping[str, Any],
              input_shape: Sequence[int], dtype: Any, target: Any) -> str | None:
    """The one rule for which requests may be computed as one batched pass: same operation,
    model, method, settings, per-input shape and dtype, and ``target`` (what a batch may not
    mix: the target itself where one call explains the whole batch for one target, or only
    its kind where each input brings its own). None where the answer would depend on the
    batch: methods that are not ``batchable`` (seeded noise), random baselines, several
    baseline samples, and settings that cannot be compared (a tensor baseline)."""
    if op not in ("attribute", "explain") or not batchable(method):
        return None
    if params.get("baseline") in RANDOM_BASELINES or params.get("baseline_samples", 1) != 1:
        return None
    try:
        plain = json.dumps(dict(params), sort_keys=True)
        return json.dumps([op, model, method, plain, [int(n) for n in input_shape],
                           None if dtype is None else str(dtype), target])
    except TypeError:
        return None
