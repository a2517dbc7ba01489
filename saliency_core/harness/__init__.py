"""One run harness for every entry point.

attribute, explain, attribute_text, Refiner.explain and attribute_targets all prepare their
call here (the model and its facts, inputs checked and on the device, parameters validated,
the forward that takes the model's lock, the method's Context) and build their result here
(targets, timing, parameters and metadata), so they cannot drift apart. What differs between
them is the strategy in the middle: one computation, a refinement, several targets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, overload

import torch
from torch import nn

from saliency_core import targets
from saliency_core.engine.stream import (
    Options,
    Stats,
    forward_no_grad,
    locked_forward,
    module_device,
)
from saliency_core.errors import (
    InputShapeError,
    MethodNotApplicableError,
    SaliencyError,
    TargetError,
)
from saliency_core.explanation import Explanation
from saliency_core.methods import Method
from saliency_core.methods import get as method_entry
from saliency_core.methods.base import Context
from saliency_core.methods.baselines import checked_normalization, image_baseline
from saliency_core.params import Target
from saliency_core.targets import Objective

ENGINE_OPTIONS = ("batch_size", "progress", "cancel", "memory_budget")


def unwrap_model(model) -> tuple[Any, nn.Module | None, dict]:
    """(callable, module, facts) for an nn.Module, a LoadedModel or a plain callable."""
    facts: dict = {"normalization": None, "default_layer": None, "task": None, "labels": None}
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        facts.update(normalization=getattr(model, "normalization", None),
                     default_layer=getattr(model, "default_layer", None),
                     labels=getattr(model, "labels", None),
                     task=getattr(model, "task", None) or getattr(model, "kind", None))
        model = inner
    if isinstance(model, nn.Module):
        return model, model, facts
    if callable(model):
        return model, None, facts
    raise SaliencyError(f"expected a torch model or a loaded model, got {type(model).__name__}")


def split_params(entry: Method, params: dict, task: str):
    """(method params, base method, base params, engine options), each validated; the base
    is None unless the method wraps another."""
    params = dict(params)
    options = Options(**{k: params.pop(k) for k in ENGINE_OPTIONS if k in params})
    if options.batch_size is not None and (not isinstance(options.batch_size, int) or options.batch_size < 1):
        raise SaliencyError(f"batch_size must be a positive integer or None, got {options.batch_size!r}")
    spec = entry.spec
    if not entry.wraps:
        return spec.validate(params, task), None, None, options
    own = {k: v for k, v in params.items() if k in {p.name for p in spec.params}}
    p = spec.validate(own, task)
    base = method_entry(p["base"])
    rest = {k: v for k, v in params.items() if k not in own}
    return p, base, base.spec.validate(rest, task), options


@overload
def resolve_targets(target: Target, n: int | None, device: torch.device | str,
                    logits: torch.Tensor, labels: Sequence[str] | None = None) -> torch.Tensor: ...
@overload
def resolve_targets(target: Target, n: int | None, device: torch.device | str,
                    logits: None = None, labels: Sequence[str] | None = None) -> torch.Tensor | None: ...
def resolve_targets(target: Target, n: int | None, device: torch.device | str,
                    logits: torch.Tensor | None = None,
                    labels: Sequence[str] | None = None) -> torch.Tensor | None:
    """A class target as a LongTensor of classes, for callers that read class probabilities
    (the evaluation metrics): "predicted" is each input's argmax of ``logits`` (None when no
    logits are at hand); an index or name is repeated for the n inputs; a sequence or tensor
    must hold n classes (any number >= 1 when n is None). With logits, classes are checked
    against the model's number of outputs. Contrasts and target functions score no single
    class, so they are refused here."""
    if isinstance(target, targets.Contrast) or targets.is_function(target):
        raise TargetError("this takes class targets (an index, a name, N of them or "
                          "'predicted'), not a contrast or a target function")
    return targets.resolve(target, n, device, logits, labels).classes


def check_inputs(inputs, family: str, task: str = "image") -> None:
    if not isinstance(inputs, torch.Tensor):
        raise InputShapeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise InputShapeError(f"inputs must be a float tensor (preprocessed), got {inputs.dtype}")
    if inputs.dim() == 3 and task != "text":
        raise InputShapeError(
            f"inputs of shape {tuple(inputs.shape)} have no batch dimension; expected "
            "[N, C, H, W] — use inputs.unsqueeze(0)"
        )
    if family == "cam" and inputs.dim() != 4:
        raise InputShapeError(f"CAM methods need images [N, C, H, W]; got shape {tuple(inputs.shape)}")
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise InputShapeError(f"expected a batch [N, ...] with N >= 1; got shape {tuple(inputs.shape)}")


def channel_problem(module: nn.Module | None, x: torch.Tensor) -> str | None:
    """What is wrong when image inputs do not have the channels the model's first
    convolution takes (channels-last, or grey for an RGB model); None when they do."""
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None) if module else None
    if first is None or x.dim() != 4 or x.shape[1] == first.in_channels:
        return None
    want, shape = first.in_channels, tuple(x.shape)
    expected = f"the model expects [N, {want}, H, W] (channels first)"
    if x.shape[-1] == want:
        return (f"inputs of shape {shape} look channels-last [N, H, W, C]; {expected}: use "
                "inputs.permute(0, 3, 1, 2)")
    if x.shape[1] == 1 and want == 3:
        return (f"inputs of shape {shape} have one channel; {expected}, RGB: convert the image "
                "to RGB before preprocessing, or repeat the channel with "
                "inputs.expand(-1, 3, -1, -1)")
    return f"inputs of shape {shape} have {x.shape[1]} channels; {expected}"


@contextmanager
def input_errors_explained(model, inputs, task: str | None):
    """Images with the wrong channels fail somewhere deep inside the model (or in building a
    baseline); that failure becomes a message saying what was expected."""
    try:
        yield
    except RuntimeError as exc:
        problem = None
        if (task or "image") == "image" and isinstance(inputs, torch.Tensor):
            problem = channel_problem(unwrap_model(model)[1], inputs)
        if problem is None:
            raise
        raise InputShapeError(problem) from exc


def _jsonable(params: dict, layer: str | None = None) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, torch.Tensor):
            v = f"tensor{tuple(v.shape)}"
        elif isinstance(v, nn.Module):  # a layer given as the module: its path in the model
            v = layer if layer is not None else type(v).__name__
        out[k] = v
    return out


def _image_baseline(name, x, seed=0, sample=0, normalization=None):
    return image_baseline(name, x, normalization, seed=seed, sample=sample)


@dataclass
class Run:
    """One prepared call: what the strategies compute with, and how its result is built."""

    method: str
    entry: Method
    ctx: Context
    inputs: torch.Tensor  # as the caller gave them
    x: torch.Tensor  # detached, on the model's device
    p: dict
    base: Method | None
    base_p: dict | None
    labels: list[str] | None = None  # the model's class names, for displaying the result
    started: float = field(default_factory=time.perf_counter)

    def compute(self, targets):
        if self.base is not None:
            return self.entry.compute(self.ctx, self.x, targets, self.p, self.base, self.base_p)
        return self.entry.compute(self.ctx, self.x, targets, self.p)

    def logits(self, points: torch.Tensor | None = None) -> torch.Tensor:
        """Logits without a graph, through the stream (Stop applies)."""
        points = self.x if points is None else points
        return forward_no_grad(self.ctx.forward, points, self.ctx.stats, self.ctx.options)

    @overload
    def targets(self, target: Target, logits: torch.Tensor) -> torch.Tensor: ...
    @overload
    def targets(self, target: Target, logits: None = None) -> torch.Tensor | None: ...
    def targets(self, target: Target, logits: torch.Tensor | None = None) -> torch.Tensor | None:
        """Resolve ``target`` for this call's inputs (names against the model's labels) and
        make it what every pass scores; returns the classes explained per input (None:
        "predicted", read at each pass)."""
        return self.use(targets.resolve(target, self.x.shape[0], self.ctx.device, logits,
                                        self.labels))

    def use(self, objective: Objective) -> torch.Tensor | None:
        """Score this call's passes with an already resolved target (a Refiner's)."""
        self.ctx.objective = objective
        return objective.classes

    def finish(self, attr: torch.Tensor) -> torch.Tensor:
        """Stops the clock (after the device has finished) and records the parameters."""
        if self.ctx.device.type == "cuda":
            torch.cuda.synchronize(self.ctx.device)
        meta = self.ctx.meta
        meta["time_s"] = time.perf_counter() - self.started
        layer = meta.get("layer")
        meta["params"] = {**_jsonable(self.p, layer), **(_jsonable(self.base_p, layer) if self.base_p else {})}
        return attr.to(self.inputs.device)

    def metadata(self, attr: torch.Tensor | None = None, score: torch.Tensor | None = None) -> dict:
        ctx = self.ctx
        p = ctx.meta["params"]
        meta = {
            "method": self.method,
            "params": p,
            "seed": p.get("seed"),
            "time_s": ctx.meta["time_s"],
            "passes": ctx.stats.passes,
            "forwards": ctx.stats.forwards,
            "chunk_size": ctx.stats.chunk_size,
            "oom_retries": ctx.stats.oom_retries,
            "device": str(ctx.device),
            "timing": ctx.stats.timing(),
        }
        if "layer" in ctx.meta:
            meta["layer"] = ctx.meta["layer"]
        if self.entry.completeness is not None and attr is not None and "f_baseline" in ctx.meta:
            meta.update(self.entry.completeness(ctx, attr, score))
        return meta

    def explanation(self, attr: torch.Tensor, logits: torch.Tensor, targets=None) -> Explanation:
        """The Explanation of a finished run, given the logits at its inputs."""
        if targets is None:
            targets = self.ctx.meta.get("targets")
        if targets is None:
            targets = logits.argmax(1)
        # The score differentiated, at the inputs: a class's logit, a contrast's difference.
        score = self.ctx.score(logits.reshape(logits.shape[0], -1), targets)[0].detach()
        meta = self.metadata(attr, score)
        meta["target"] = targets.tolist()
        meta["target_value"] = self.ctx.objective.value
        return Explanation(
            attribution=attr,
            target=targets.cpu(),
            score=score.cpu(),
            predicted=logits.argmax(1).cpu(),
            probabilities=torch.softmax(logits.float(), 1).cpu(),
            metadata=meta,
            inputs=self.inputs,
            labels=self.labels,
            normalization=self.ctx.normalization,
        )


def prepare(model, inputs: torch.Tensor, method: str, params: dict, *, task: str | None = None,
            forward=None, make_baseline=None, want_logits: bool = False,
            family: str | None = None) -> Run:
    """Everything a call needs before its strategy runs. ``want_logits``: the caller will
    read the model's output at the inputs (explain), which completeness checks need too."""
    fn, module, facts = unwrap_model(model)
    task = task or facts["task"] or "image"
    entry = method_entry(method)
    if (entry.needs_layer or entry.needs_attention) and task == "text":
        text_methods = ", ".join(m.name for m in _text_methods())
        raise MethodNotApplicableError(f"{method} maps image layers; for text use {text_methods}")
    check_inputs(inputs, family or entry.spec.family, task)
    if "normalization" in params:  # how a plain nn.Module's inputs were normalised
        params = dict(params)
        facts["normalization"] = checked_normalization(params.pop("normalization"), inputs.shape[1])
    p, base, base_p, options = split_params(entry, params, task)
    device = module_device(module) if module is not None else inputs.device
    # Each pass takes the model's lock, not the whole request: another session's request on
    # the same model runs between this one's chunks.
    forward = locked_forward(forward or fn, module)
    if make_baseline is None:
        make_baseline = partial(_image_baseline, normalization=facts["normalization"])
    ctx = Context(forward=forward, module=module, device=device, options=options, stats=Stats(),
                  task=task, normalization=facts["normalization"],
                  default_layer=facts["default_layer"], make_baseline=make_baseline,
                  want_completeness=want_logits and entry.completeness is not None,
                  # Methods whose first pass runs at the inputs report the logits there, so
                  # explain() costs no forward pass beyond the attribution's own.
                  capture_logits=want_logits and entry.at_input)
    return Run(method=method, entry=entry, ctx=ctx, inputs=inputs, x=inputs.detach().to(device),
               p=p, base=base, base_p=base_p, labels=facts["labels"])


def _text_methods():
    from saliency_core.methods import REGISTRY

    return [m for m in REGISTRY.values() if m.spec.text]
