"""The public entry points: attribute, explain and their shared preparation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from .baselines import checked_normalization, image_baseline
from .engine import (
    Options,
    Stats,
    check_target_range,
    forward_no_grad,
    locked_forward,
    module_device,
)
from .errors import (
    InputShapeError,
    MethodNotApplicableError,
    SaliencyError,
    TargetError,
)
from .methods import get as method_entry
from .methods.base import Context
from .methods.smoothgrad import smooth

ENGINE_OPTIONS = ("batch_size", "progress", "cancel", "memory_budget")


@dataclass
class Explanation:
    attribution: torch.Tensor
    target: torch.Tensor  # [N] classes explained
    score: torch.Tensor  # [N] model output (logit) for the target at the input
    predicted: torch.Tensor  # [N]
    probabilities: torch.Tensor  # [N, K] softmax of the logits
    metadata: dict = field(default_factory=dict)


def unwrap_model(model) -> tuple[Any, nn.Module | None, dict]:
    """(callable, module, facts) for an nn.Module, a LoadedModel or a plain callable."""
    facts: dict = {"normalization": None, "default_layer": None, "kind": None}
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        facts.update(normalization=getattr(model, "normalization", None),
                     default_layer=getattr(model, "default_layer", None),
                     kind=getattr(model, "kind", None))
        model = inner
    if isinstance(model, nn.Module):
        return model, model, facts
    if callable(model):
        return model, None, facts
    raise SaliencyError(f"expected a torch model or a loaded model, got {type(model).__name__}")


def split_params(method: str, params: dict, kind: str):
    """(method params, base params for smoothgrad, engine options), each validated."""
    params = dict(params)
    options = Options(**{k: params.pop(k) for k in ENGINE_OPTIONS if k in params})
    if options.batch_size is not None and (not isinstance(options.batch_size, int) or options.batch_size < 1):
        raise SaliencyError(f"batch_size must be a positive integer or None, got {options.batch_size!r}")
    spec = method_entry(method).spec
    if method != "smoothgrad":
        return spec.validate(params, kind), None, options
    own = {k: v for k, v in params.items() if k in {p.name for p in spec.params}}
    p = spec.validate(own, kind)
    base = method_entry(p["base"]).spec
    rest = {k: v for k, v in params.items() if k not in own}
    return p, base.validate(rest, kind), options


def resolve_targets(target, n: int, device, logits_fn=None) -> torch.Tensor | None:
    """Targets as a LongTensor [n]; None for "predicted" when no logits are at hand."""
    if isinstance(target, str):
        if target != "predicted":
            raise TargetError(f"target must be a class index, a list of them or 'predicted'; got {target!r}")
        return None if logits_fn is None else logits_fn().argmax(1)
    if isinstance(target, bool):
        raise TargetError("target must be a class index, not a boolean")
    if isinstance(target, int) or (isinstance(target, torch.Tensor) and target.dim() == 0):
        return torch.full((n,), int(target), dtype=torch.long, device=device)
    try:
        t = torch.as_tensor(target, dtype=torch.long, device=device).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TargetError(f"target must be an int, a sequence of {n} ints or 'predicted'; got {target!r}") from None
    if t.numel() != n:
        raise TargetError(f"got {t.numel()} targets for {n} inputs")
    return t


def check_inputs(inputs, family: str, kind: str = "image") -> None:
    if not isinstance(inputs, torch.Tensor):
        raise InputShapeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise InputShapeError(f"inputs must be a float tensor (preprocessed), got {inputs.dtype}")
    if inputs.dim() == 3 and kind != "text":
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


def compute(ctx: Context, method: str, x: torch.Tensor, targets, p: dict, base_p: dict | None):
    m = method_entry(method)
    if method == "smoothgrad":
        return smooth(method_entry(p["base"]).compute, ctx, x, targets, p, base_p)
    return m.compute(ctx, x, targets, p)


def _jsonable(params: dict, layer: str | None = None) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, torch.Tensor):
            v = f"tensor{tuple(v.shape)}"
        elif isinstance(v, nn.Module):  # a layer given as the module: its path in the model
            v = layer if layer is not None else type(v).__name__
        out[k] = v
    return out


def run(model, inputs: torch.Tensor, method: str, target="predicted", **kwargs):
    """Shared body of attribute/explain/attribute_text. Returns (attribution, ctx, logits).

    Images with the wrong channels fail somewhere deep inside the model (or in building a
    baseline); that failure is turned into a message saying what was expected."""
    try:
        return _run(model, inputs, method, target, **kwargs)
    except RuntimeError as exc:
        problem = None
        if kwargs.get("kind", "image") == "image" and isinstance(inputs, torch.Tensor):
            problem = channel_problem(unwrap_model(model)[1], inputs)
        if problem is None:
            raise
        raise InputShapeError(problem) from exc


def _run(model, inputs: torch.Tensor, method: str, target="predicted", *, params: dict,
         kind: str | None = None, forward=None, make_baseline=None, want_logits: bool = False):
    fn, module, facts = unwrap_model(model)
    kind = kind or facts["kind"] or "image"
    entry = method_entry(method)
    spec = entry.spec
    if (spec.family == "cam" or method == "guided_gradcam") and kind == "text":
        raise MethodNotApplicableError(f"{method} maps image layers; for text use gradient, gradient_x_input, integrated_gradients or smoothgrad")
    check_inputs(inputs, spec.family, kind)
    if "normalization" in params:  # how a plain nn.Module's inputs were normalised
        params = dict(params)
        facts["normalization"] = checked_normalization(params.pop("normalization"),
                                                       inputs.shape[1])
    p, base_p, options = split_params(method, params, kind)
    device = module_device(module) if module is not None else inputs.device
    x = inputs.detach().to(device)
    # Each pass takes the model's lock, not the whole request: another session's request on
    # the same model runs between this one's chunks.
    forward = locked_forward(forward or fn, module)
    if make_baseline is None:
        make_baseline = partial(_image_baseline, normalization=facts["normalization"])
    # Methods whose first pass runs at the inputs themselves report the logits there, so
    # explain() costs no forward pass beyond the attribution's own.
    capture = want_logits and entry.at_input
    ctx = Context(forward=forward, module=module, device=device, options=options, stats=Stats(),
                  kind=kind, normalization=facts["normalization"],
                  default_layer=facts["default_layer"], make_baseline=make_baseline,
                  want_completeness=want_logits and method == "integrated_gradients",
                  capture_logits=capture)
    start = time.perf_counter()
    logits = None
    if (want_logits and not capture) or (not entry.at_input and isinstance(target, str)):
        logits = forward_no_grad(forward, x, ctx.stats)
    targets = resolve_targets(target, x.shape[0], device, (lambda: logits) if logits is not None else None)
    if targets is not None:
        # Read once, from the caller's ints where possible (no device read at all); the
        # chunks then check their targets without synchronising with the device.
        ctx.target_range = _target_range(target, targets)
        if logits is not None:
            check_target_range(ctx.target_range, logits.shape[1])
    attr = compute(ctx, method, x, targets, p, base_p)
    if capture:
        logits = ctx.input_logits()
        if logits is None:  # a method path that did not report them
            logits = forward_no_grad(forward, x, ctx.stats)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    ctx.meta["time_s"] = time.perf_counter() - start
    if targets is not None:  # inner passes (e.g. noisy copies) may have recorded their own
        ctx.meta["targets"] = targets
    layer = ctx.meta.get("layer")
    ctx.meta["params"] = {**_jsonable(p, layer), **(_jsonable(base_p, layer) if base_p else {})}
    return attr.to(inputs.device), ctx, logits


def _target_range(target, targets: torch.Tensor) -> tuple[int, int]:
    if isinstance(target, int):
        return target, target
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, int) for t in target):
        return min(target), max(target)
    return int(targets.min()), int(targets.max())


def _image_baseline(name, x, seed=0, sample=0, normalization=None):
    return image_baseline(name, x, normalization, seed=seed, sample=sample)


def attribute(model, inputs: torch.Tensor, method: str, target="predicted", **params) -> torch.Tensor:
    """Raw, signed, unnormalised attribution (see docs/CONTRACTS.md)."""
    attr, _ctx, _logits = run(model, inputs, method, target, params=params)
    return attr


def metadata(ctx: Context, method: str, attr: torch.Tensor, score: torch.Tensor) -> dict:
    p = ctx.meta["params"]
    meta = {
        "method": method,
        "params": p,
        "seed": p.get("seed"),
        "time_s": ctx.meta["time_s"],
        "passes": ctx.stats.passes,
        "forwards": ctx.stats.forwards,
        "chunk_size": ctx.stats.chunk_size,
        "oom_retries": ctx.stats.oom_retries,
        "device": str(ctx.device),
    }
    if "layer" in ctx.meta:
        meta["layer"] = ctx.meta["layer"]
    if method == "integrated_gradients":
        f_b = ctx.meta["f_baseline"].cpu()
        total = attr.detach().flatten(1).sum(1).cpu()
        f_x = score.detach().cpu()
        meta.update(
            f_x=f_x.tolist(),
            f_baseline=f_b.tolist(),
            sum_attribution=total.tolist(),
            completeness_delta=(total - (f_x - f_b)).tolist(),
        )
    return meta


def explain(model, inputs: torch.Tensor, method: str, target="predicted", **params) -> Explanation:
    """Attribution plus what was explained: prediction, probabilities and metadata."""
    attr, ctx, logits = run(model, inputs, method, target, params=params, want_logits=True)
    return _explanation(ctx, method, attr, logits)


def _explanation(ctx, method, attr, logits) -> Explanation:
    targets = ctx.meta["targets"]
    if targets is None:
        targets = logits.argmax(1)
    score = logits.gather(1, targets[:, None]).squeeze(1)
    meta = metadata(ctx, method, attr, score)
    meta["target"] = targets.tolist()
    return Explanation(
        attribution=attr,
        target=targets.cpu(),
        score=score.cpu(),
        predicted=logits.argmax(1).cpu(),
        probabilities=torch.softmax(logits.float(), 1).cpu(),
        metadata=meta,
    )
