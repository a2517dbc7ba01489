"""Several target classes of one input from one forward pass and one batched backward.

Explaining the top-5 classes with five calls costs five forward and five backward passes.
The forward pass does not depend on the target, and the backward passes differ only in the
vector they start from, so one forward and one vmapped backward (``is_grads_batched``)
give all of them; where vmap cannot batch an operator, the backward passes run one after
another on the kept graph, which still saves every forward pass but the first. The targets
go through the stream in chunks (batch_size, else all at once), so Stop, progress and the
out-of-memory retry apply here as everywhere.

    result = attribute_targets(model, x, method="gradcam", top_k=5)
    result.attribution   # [5, H, W]; result.targets holds the five classes
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Unpack

import torch
import torch.nn.functional as F

from saliency_core.engine.layers import capture_output, spatial_map
from saliency_core.engine.stream import Step, logits_of, model_lock
from saliency_core.errors import MethodNotApplicableError, ParameterError
from saliency_core.harness import input_errors_explained, prepare
from saliency_core.methods import get as method_entry
from saliency_core.methods import with_capability
from saliency_core.methods.cam import layer_as_leaf, target_layer
from saliency_core.params import CamTargetParams, MethodParams, Model, Target
from saliency_core.targets import several

# The methods whose attribution is a function of one gradient, by where it is taken.
SEVERAL_TARGETS = with_capability("from_gradients")
CAM_FORMULAS = {n: method_entry(n).from_gradients for n in SEVERAL_TARGETS if method_entry(n).needs_layer}
INPUT_METHODS = tuple(n for n in SEVERAL_TARGETS if n not in CAM_FORMULAS)


@dataclass
class TargetAttributions:
    """Several classes' attributions of one input; what ``attribute_targets`` returns.

    Attributes:
        attribution: [K, H, W] for CAM methods, [K, C, H, W] for gradient methods; map k
            explains ``targets[k]``.
        targets: LongTensor [K], the classes in the order asked (by score for ``top_k``); a
            contrast's first class, -1 for a target function.
        scores: [K], the scores differentiated: the classes' logits, a contrast's difference.
        probabilities: [num_classes], the softmax of the logits.
        metadata: JSON-able facts (method, params, time_s, passes, device, backward_batched,
            target_value: the targets as given).

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> r = sc.attribute_targets(loaded, torch.rand(1, 3, 64, 64), top_k=3)
        >>> r.attribution.shape, r.targets.shape
        (torch.Size([3, 64, 64]), torch.Size([3]))
    """

    attribution: torch.Tensor  # [K, H, W] (CAM) or [K, C, H, W] (gradient methods)
    targets: torch.Tensor  # [K] classes, in the order asked (or by score for top_k)
    scores: torch.Tensor  # [K] the scores differentiated (logits of those classes)
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


def _targets(r, targets, top_k, logits: torch.Tensor):
    """(classes [K], scores(flat logits) -> [K], the targets' JSON forms): the ``top_k``
    classes, or each of ``targets`` (any target value: index, name, contrast, function)."""
    if targets is None:
        k = 5 if top_k is None else top_k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= logits.shape[1]:
            raise ParameterError(f"top_k must be an integer in [1, {logits.shape[1]}], got {top_k!r}")
        classes = logits[0].topk(k).indices
        return classes, lambda flat: flat[0, classes], classes.tolist()
    if top_k is not None:
        raise ParameterError("give either targets or top_k, not both")
    return several(targets, r.labels, logits)


def attribute_targets(model: Model, inputs: torch.Tensor, targets: Sequence[Target] | Target | None = None,
                      method: str = "gradcam", *, top_k: int | None = None,
                      **params: Unpack[MethodParams]) -> TargetAttributions:
    """Attributions of one input for several classes, from one forward and one batched backward.

    Each map equals what ``attribute(model, inputs, method, target=k)`` returns, at a
    fraction of the cost of calling it once per class.

    Args:
        model: As for ``attribute``.
        inputs: One input [1, C, H, W].
        targets: The targets, each a target value as ``attribute`` takes it for one input
            (a class index or name, a ``Contrast``, a function of the logits), as a sequence
            (or a tensor of indices); or None for the ``top_k`` classes.
        method: One that is a function of one gradient: gradcam, gradcam_plus_plus,
            hirescam, layercam, xgradcam, gradient, gradient_x_input (``SEVERAL_TARGETS``).
        top_k: The number of highest-scoring classes when ``targets`` is None (default 5).
        **params: The method's parameters (``layer``, ``upsample``) and engine options.

    Returns:
        A ``TargetAttributions``.

    Raises:
        MethodNotApplicableError: A method not in ``SEVERAL_TARGETS``.
        ParameterError: A batch of more than one input, both ``targets`` and ``top_k``, or a
            ``top_k`` out of range.
        TargetError: A class the model does not have, or a target ``attribute`` refuses.
        InputShapeError: Inputs that are not a float batch the model takes.

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> r = sc.attribute_targets(loaded, torch.rand(1, 3, 64, 64), [0, 2], "gradient")
        >>> r.attribution.shape, r.targets.tolist()
        (torch.Size([2, 3, 64, 64]), [0, 2])
    """
    if method not in SEVERAL_TARGETS:
        raise MethodNotApplicableError(
            f"several targets at once are supported for {', '.join(SEVERAL_TARGETS)}; got {method!r}"
        )
    with input_errors_explained(model, inputs, None):
        r = prepare(model, inputs, method, dict(params), family="cam" if method in CAM_FORMULAS else "input")
        if inputs.shape[0] != 1:
            raise ParameterError(f"explain one input at a time for several targets; got a batch of {inputs.shape[0]}")
        if method in CAM_FORMULAS:
            attr, t, logits, scores, values, batched = _cam_targets(r, targets, top_k)
        else:
            attr, t, logits, scores, values, batched = _input_targets(r, targets, top_k)
        attr = r.finish(attr)
    meta = r.metadata()
    meta["backward_batched"] = batched
    meta["target_value"] = values
    logits = logits.detach()
    return TargetAttributions(
        attribution=attr,
        targets=t.cpu(),
        scores=scores.detach().cpu(),
        probabilities=torch.softmax(logits[0].float(), 0).cpu(),
        metadata=meta,
    )


def cam_for_targets(model: Model, inputs: torch.Tensor, targets: Sequence[Target] | Target | None = None,
                    method: str = "gradcam", **params: Unpack[CamTargetParams]) -> torch.Tensor:
    """Just the maps of ``attribute_targets`` for a CAM method.

    Args:
        model: As for ``attribute``.
        inputs: One input [1, C, H, W].
        targets: The targets (as for ``attribute_targets``), or None for the ``top_k``
            highest-scoring classes (5 by default).
        method: A CAM method: gradcam, gradcam_plus_plus, hirescam, layercam, xgradcam.
        **params: ``top_k``, ``layer``, ``upsample`` and engine options.

    Returns:
        [K, H, W], map k for class k of ``targets``.

    Raises:
        MethodNotApplicableError: Not a CAM method that supports several targets.
        SaliencyError: Whatever ``attribute_targets`` raises.

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> sc.cam_for_targets(loaded, torch.rand(1, 3, 64, 64), [1, 4], "hirescam").shape
        torch.Size([2, 64, 64])
    """
    if method not in CAM_FORMULAS:
        raise MethodNotApplicableError(f"cam_for_targets takes {', '.join(CAM_FORMULAS)}; got {method!r}")
    return attribute_targets(model, inputs, targets, method, **params).attribution


def _gradients(r, scores: torch.Tensor, wrt: torch.Tensor, kind: str):
    """d scores[k] / d wrt for every target, the targets chunked by the stream."""
    parts, batched = [], []
    k = scores.shape[0]

    def take(_stream, chunk, _none):
        g, b = _batched_grads(scores[chunk], wrt)
        batched.append(b)
        return None, (g,)

    order = torch.arange(k, device=scores.device)
    r.ctx.stream().run(k, lambda a, b: (order[a:b], None), lambda a, b, g: parts.append(g),
                       step=Step(kind, take), chunk=r.ctx.options.batch_size or k)
    return (parts[0] if len(parts) == 1 else torch.cat(parts)), all(batched)


def _cam_targets(r, targets, top_k):
    ctx, x = r.ctx, r.x
    layer = target_layer(ctx, x, r.p["layer"])
    # The hook is on the shared model for the forward pass only, under the model's lock; the
    # backward passes start from the kept graph and need neither, so other sessions' passes
    # on this model run between the chunks of classes.
    with model_lock(ctx.module), torch.no_grad(), layer_as_leaf(layer) as store:
        logits = logits_of(ctx.forward(x))
        ctx.stats.forwards += 1
        a = store.get("output")
    if a is None or not logits.requires_grad:  # the output could not become a leaf: record it all
        with model_lock(ctx.module), torch.enable_grad(), capture_output(layer) as store:
            logits = logits_of(ctx.forward(x.detach().requires_grad_(True)))
            ctx.stats.forwards += 1
            a = store["output"]
    t, score_of, values = _targets(r, targets, top_k, logits.reshape(1, -1))
    with torch.enable_grad():
        scores = score_of(logits.reshape(1, -1))
        g, batched = _gradients(r, scores, a, "layer_gradient")
    k = t.shape[0]
    hw = x.shape[-2:]
    acts = spatial_map(ctx.module, a.detach(), hw).expand(k, -1, -1, -1)
    grads = spatial_map(ctx.module, g.detach().reshape(k, *a.shape[1:]), hw)
    cam = CAM_FORMULAS[r.method](acts, grads)
    if r.p["upsample"]:
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam, t, logits, scores, values, batched


def _input_targets(r, targets, top_k):
    x = r.x
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = logits_of(r.ctx.forward(xg))
        r.ctx.stats.forwards += 1
        flat = logits.reshape(1, -1)
        t, score_of, values = _targets(r, targets, top_k, flat)
        scores = score_of(flat)
        g, batched = _gradients(r, scores, xg, "input_gradient")
    g = g.detach().reshape(t.shape[0], *x.shape[1:])
    return r.entry.from_gradients(x, g), t, logits, scores, values, batched
