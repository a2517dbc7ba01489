"""The engine's work beyond one attribution, as the service runs it and as the app runs it
without a service: the same functions either way, so the answers are the same.

- **Named calls** (``CALLS``): maps for several classes at once, the deletion/insertion
  scoreboard, the sanity checks' randomization tests. Their arguments and results cross the
  wire as structured values (saliency_core/serve/wire.py: tensors bit for bit, listed dataclasses,
  models by name), so the service needs no code per call.
- **A progressive run** (``refine_levels``): Integrated Gradients or SmoothGrad evaluated at
  increasing counts with one Refiner, each level reusing the previous ones' gradient sums; the
  service streams every level but the last as soon as it is ready.

No Ray here: the service (saliency_core/serve/deployment.py) and the app (workbench/jobs/compute.py) import it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch

from saliency_core.errors import SaliencyError

# name -> (module, function). Only these can be asked for.
CALLS = {
    "attribute_targets": ("saliency_core", "attribute_targets"),
    "scoreboard": ("saliency_core.evaluation", "scoreboard"),
    "parameter_randomization": ("saliency_core.evaluation", "parameter_randomization"),
    "data_randomization": ("saliency_core.evaluation", "data_randomization"),
    "candidate_layers": ("saliency_core.serve.calls", "model_layers"),
}
ENGINE_OPTIONS = ("progress", "cancel")


class UnknownCallError(SaliencyError):
    """The request names a call the engine does not offer."""


def function(name: str) -> Callable:
    if name not in CALLS:
        raise UnknownCallError(f"the engine offers no call {name!r}; it offers: "
                               f"{', '.join(sorted(CALLS))}")
    module, attr = CALLS[name]
    return getattr(importlib.import_module(module), attr)


def accepted_options(fn: Callable, options: dict) -> dict:
    """The engine options (progress, cancel) that ``fn`` takes."""
    parameters = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in parameters}


def run_call(name: str, args: list, kwargs: dict, options: dict | None = None,
             device: torch.device | str | None = None) -> Any:
    """``CALLS[name](*args, **kwargs)`` with the engine options it accepts; tensor positional
    arguments (the inputs) are moved to ``device`` (the models' device) when one is given."""
    fn = function(name)
    if device is not None:
        args = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
    return fn(*args, **kwargs, **accepted_options(fn, options or {}))


def model_layers(model) -> list[tuple[str, tuple[int, ...]]]:
    """A LoadedModel's CAM layer candidates (path, activation shape): one hooked forward
    pass, under the model's lock like every other run on a shared model."""
    from saliency_core.engine.locks import model_lock

    with model_lock(model.model):
        return [(path, tuple(shape)) for path, shape in model.candidate_layers()]


def refine_levels(model, inputs: torch.Tensor, method: str, target, params: dict,
                  counts: list[int], options: dict | None = None,
                  on_level: Callable[[int, Any], None] | None = None):
    """Explanations of ``method`` at each count of ``counts`` (coarse to fine) from one
    Refiner; ``on_level(count, explanation)`` gets each level but the last, which is
    returned. Each level equals what the app's progressive run computes for it."""
    from saliency_core.harness.refine import REFINABLE, Refiner

    knob = REFINABLE.get(method)
    if knob is None:
        raise SaliencyError(f"{method!r} has no progressive form; refinable: "
                            f"{', '.join(REFINABLE)}")
    refiner = Refiner(model, inputs, method, target=target)
    result = None
    for i, count in enumerate(counts):
        result = refiner.explain(**{**params, knob: count}, **(options or {}))
        if on_level is not None and i < len(counts) - 1:
            on_level(count, result)
    return result
