"""Several target classes of one input from one forward pass and one batched backward.

Explaining the top-5 classes with five calls costs five forward and five backward passes.
The forward pass does not depend on the target, and the backward passes differ only in the
vector they start from, so one forward and one vmapped backward (``is_grads_batched``)
give all of them; where vmap cannot batch an operator, the backward passes run one after
another on the kept graph, which still saves every forward pass but the first.

    result = attribute_targets(model, x, method="gradcam", top_k=5)
    result.attribution   # [5, H, W]; result.targets holds the five classes
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .api import check_inputs, split_params, unwrap_model
from .engine import Stats, check_targets, logits_of, model_lock, module_device
from .errors import MethodNotApplicableError, ParameterError, TargetError
from .layers import capture_output, to_spatial
from .methods.base import Context
from .methods.cam import (
    gradcam_formula,
    gradcam_plus_plus_formula,
    hirescam_formula,
    layer_as_leaf,
    target_layer,
)

CAM_FORMULAS = {
    "gradcam": gradcam_formula,
    "gradcam_plus_plus": gradcam_plus_plus_formula,
    "hirescam": hirescam_formula,
}
INPUT_METHODS = ("gradient", "gradient_x_input")


@dataclass
class TargetAttributions:
    attribution: torch.Tensor  # [K, H, W] (CAM) or [K, C, H, W] (gradient methods)
    targets: torch.Tensor  # [K] classes, in the order asked (or by score for top_k)
    scores: torch.Tensor  # [K] logits of those classes
    probabilities: torch.Tensor  # [num_classes] softmax of the logits
    metadata: dict = field(default_factory=dict)


def _batched_grads(scores: torch.Tensor, wrt: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """d scores[k] / d wrt for every k, stacked: [K, *wrt.shape]. (grads, batched?)"""
    k = scores.shape[0]
    try:
        eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
        (g,) = torch.autograd.grad(scores, wrt, grad_outputs=eye, is_grads_batched=True,
                                   retain_graph=True)
        return g, True
    except (RuntimeError, NotImplementedError):
        # vmap has no batching rule for some operator of this model: one pass per class.
        grads = [torch.autograd.grad(scores[i], wrt, retain_graph=True)[0] for i in range(k)]
        return torch.stack(grads), False


def _resolve(targets, top_k, logits: torch.Tensor) -> torch.Tensor:
    if targets is None:
        k = 5 if top_k is None else top_k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= logits.shape[1]:
            raise ParameterError(f"top_k must be an integer in [1, {logits.shape[1]}], got {top_k!r}")
        return logits[0].topk(k).indices
    if top_k is not None:
        raise ParameterError("give either targets or top_k, not both")
    try:
        t = torch.as_tensor(targets, dtype=torch.long, device=logits.device).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TargetError(f"targets must be a sequence of class indices, got {targets!r}") from None
    if t.numel() == 0:
        raise TargetError("give at least one target class")
    check_targets(t, logits.shape[1])
    return t


def attribute_targets(model, inputs: torch.Tensor, targets=None, method: str = "gradcam", *,
                      top_k: int | None = None, **params) -> TargetAttributions:
    """Attributions of one input [1, C, H, W] for each class in ``targets`` (or the ``top_k``
    highest-scoring ones, 5 by default). Methods: gradcam, gradcam_plus_plus, hirescam
    (params: layer, upsample) and gradient, gradient_x_input. Each map equals what
    ``attribute(model, inputs, method, target=k)`` returns."""
    if method not in CAM_FORMULAS and method not in INPUT_METHODS:
        raise MethodNotApplicableError(
            f"several targets at once are supported for {', '.join([*CAM_FORMULAS, *INPUT_METHODS])}; got {method!r}"
        )
    fn, module, facts = unwrap_model(model)
    kind = facts["kind"] or "image"
    family = "cam" if method in CAM_FORMULAS else "input"
    check_inputs(inputs, family, kind)
    if inputs.shape[0] != 1:
        raise ParameterError(f"explain one input at a time for several targets; got a batch of {inputs.shape[0]}")
    p, _base, options = split_params(method, params, kind)
    device = module_device(module) if module is not None else inputs.device
    x = inputs.detach().to(device)
    ctx = Context(forward=fn, module=module, device=device, options=options, stats=Stats(),
                  kind=kind, default_layer=facts["default_layer"])
    start = time.perf_counter()
    with model_lock(module):
        if family == "cam":
            attr, t, logits, batched = _cam_targets(ctx, x, targets, top_k, method, p)
        else:
            attr, t, logits, batched = _input_targets(ctx, x, targets, top_k, method)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    meta = {
        "method": method,
        "params": {k: v for k, v in p.items() if not isinstance(v, torch.Tensor)},
        "time_s": time.perf_counter() - start,
        "forwards": 1,
        "backward_batched": batched,
        "device": str(device),
    }
    if "layer" in ctx.meta:
        meta["layer"] = ctx.meta["layer"]
    logits = logits.detach()
    return TargetAttributions(
        attribution=attr.to(inputs.device),
        targets=t.cpu(),
        scores=logits[0, t].cpu(),
        probabilities=torch.softmax(logits[0].float(), 0).cpu(),
        metadata=meta,
    )


def cam_for_targets(model, inputs: torch.Tensor, targets=None, method: str = "gradcam", **params) -> torch.Tensor:
    """Just the maps [K, H, W] of ``attribute_targets`` for a CAM method."""
    if method not in CAM_FORMULAS:
        raise MethodNotApplicableError(f"cam_for_targets takes {', '.join(CAM_FORMULAS)}; got {method!r}")
    return attribute_targets(model, inputs, targets, method, **params).attribution


def _cam_targets(ctx, x, targets, top_k, method, p):
    layer = target_layer(ctx, x, p["layer"])
    with torch.no_grad(), layer_as_leaf(layer) as store:
        logits = logits_of(ctx.forward(x))
        a = store.get("output")
        if a is not None and logits.requires_grad:
            t = _resolve(targets, top_k, logits.reshape(1, -1))
            with torch.enable_grad():
                g, batched = _batched_grads(logits.reshape(1, -1)[0, t], a)
    if a is None or not logits.requires_grad:  # the layer's output could not become a leaf
        with torch.enable_grad(), capture_output(layer) as store:
            logits = logits_of(ctx.forward(x.detach().requires_grad_(True)))
            a = store["output"]
            t = _resolve(targets, top_k, logits.reshape(1, -1))
            g, batched = _batched_grads(logits.reshape(1, -1)[0, t], a)
    k = t.shape[0]
    acts = to_spatial(a.detach()).expand(k, -1, -1, -1)
    grads = to_spatial(g.detach().reshape(k, *a.shape[1:]))
    cam = CAM_FORMULAS[method](acts, grads)
    if p["upsample"]:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam, t, logits, batched


def _input_targets(ctx, x, targets, top_k, method):
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = logits_of(ctx.forward(xg))
        flat = logits.reshape(1, -1)
        t = _resolve(targets, top_k, flat)
        g, batched = _batched_grads(flat[0, t], xg)
    g = g.detach().reshape(t.shape[0], *x.shape[1:])
    return (g * x if method == "gradient_x_input" else g), t, logits, batched
