"""One engine interface: the calls an application makes for model work, whether the engine
runs in this process (:class:`LocalEngine`) or behind the engine service
(``saliency_core.serve.client.Client``, the same calls over HTTP).

Both take a model as a LoadedModel (or a name, loaded from the model cache), accept the engine
options ``progress`` and ``cancel`` among the parameters, and return the library's own results:
``attribute`` a tensor, ``explain`` an Explanation, ``attribute_text`` a TextAttribution,
``refine`` the Explanation at the last of several counts (each coarser one handed to
``on_level(count, explanation)`` as soon as it is ready), ``call`` one of the named calls of
saliency_core.serve.calls. A caller holds an ``Engine`` and never asks which one it is.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from saliency_core.serve import calls as named_calls
from saliency_core.serve.wire import ModelRef


@runtime_checkable
class Engine(Protocol):
    def attribute(self, model, inputs: torch.Tensor, method: str, target="predicted",
                  **params) -> torch.Tensor: ...

    def explain(self, model, inputs: torch.Tensor, method: str, target="predicted",
                **params): ...

    def attribute_text(self, model, text: str, method: str, target="predicted", **params): ...

    def refine(self, model, inputs: torch.Tensor, method: str, counts: list[int],
               target="predicted", on_level=None, **params): ...

    def call(self, function: str, *args, **kwargs): ...


def _loaded(model):
    """A LoadedModel for a name (or a ``model_ref``), as the service resolves one."""
    if isinstance(model, str | ModelRef):
        from saliency_core.models import load_model

        return load_model(model if isinstance(model, str) else model.name)
    return model


class LocalEngine:
    """The engine in this process: the library's functions, called as the service calls them.

    Beyond the shared calls it can hand out the refiners a progressive run keeps across
    requests (``refiner``, ``text_refiner``): state that only exists where the model is.
    """

    def attribute(self, model, inputs: torch.Tensor, method: str, target="predicted",
                  **params) -> torch.Tensor:
        from saliency_core.api import attribute

        return attribute(_loaded(model), inputs, method, target=target, **params)

    def explain(self, model, inputs: torch.Tensor, method: str, target="predicted", **params):
        from saliency_core.api import explain

        return explain(_loaded(model), inputs, method, target=target, **params)

    def attribute_text(self, model, text: str, method: str, target="predicted", **params):
        from saliency_core.text.classifier import attribute_text

        loaded = _loaded(model)
        return attribute_text(loaded, loaded.tokenizer, text, method, target=target, **params)

    def refine(self, model, inputs: torch.Tensor, method: str, counts: list[int],
               target="predicted", on_level=None, **params):
        options = {k: params.pop(k) for k in named_calls.ENGINE_OPTIONS if k in params}
        return named_calls.refine_levels(_loaded(model), inputs, method, target, params,
                                         [int(c) for c in counts], options, on_level)

    def call(self, function: str, *args, **kwargs):
        options = {k: kwargs.pop(k) for k in named_calls.ENGINE_OPTIONS if k in kwargs}
        args_ = [_loaded(a) if isinstance(a, ModelRef) else a for a in args]
        kwargs_ = {k: _loaded(v) if isinstance(v, ModelRef) else v for k, v in kwargs.items()}
        return named_calls.run_call(function, args_, kwargs_, options)

    # ---- state kept across requests: in this process only --------------------------------

    def refiner(self, model, inputs: torch.Tensor, method: str, target="predicted") -> Any:
        from saliency_core.harness.refine import Refiner

        return Refiner(_loaded(model), inputs, method, target=target)

    def text_refiner(self, model, text: str, method: str, target="predicted",
                     max_length: int | None = None) -> Any:
        from saliency_core.text.classifier import TextRefiner

        loaded = _loaded(model)
        return TextRefiner(loaded, loaded.tokenizer, text, method, target,
                           max_length=max_length)
