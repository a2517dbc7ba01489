"""Guided Backprop (Springenberg et al. 2015) and DeconvNet (Zeiler & Fergus 2014): the
gradient with modified ReLU backward rules, applied by relu_rules without touching the model;
Guided Backprop also by the faster paths in PATHS where they are checked to agree."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import torch
from torch import nn

from saliency_core.engine.model_state import model_state
from saliency_core.engine.stream import Stats, logits_of, model_lock
from saliency_core.methods.base import Context
from saliency_core.methods.gradient import input_gradients
from saliency_core.methods.guided import graph_rule
from saliency_core.methods.guided.relu_rules import with_relu_rule
from saliency_core.methods.specs import MethodSpec

GUIDED_BACKPROP = MethodSpec(
    name="guided_backprop",
    label="Guided Backprop",
    description="Gradient where ReLUs pass back only positive signal at positive activations; "
    "sharp, but largely independent of the model's weights (fails randomization checks).",
    family="input",
    needs_relu=True,
    reference="Springenberg et al. 2015",
)

DECONVNET = MethodSpec(
    name="deconvnet",
    label="DeconvNet",
    description="Backward pass that rectifies the signal at every ReLU, ignoring the forward "
    "activation pattern; highlights edges the filters respond to.",
    family="input",
    needs_relu=True,
    reference="Zeiler & Fergus 2014",
)


@contextmanager
def rectifying_relu_hooks(module: nn.Module, active=lambda: True):
    """Guided Backprop with no Python in the forward pass but one hook per ReLU module call.

    A forward hook on each nn.ReLU (and nn.Hardtanh, ReLU6's base class) module puts a tensor
    hook on its output that rectifies the gradient arriving there; the module's own backward
    then applies the forward gate (its linear range). That is
    exactly the guided rule, without intercepting every operator of the forward pass, which
    on a GPU at batch size 1 is most of what the rule costs. ReLUs called as functions are
    not seen, so this is used only for models where it was checked to give the same map
    (see guided_gradients). ``active()`` is read during the backward pass.
    """

    def rectify(grad):
        return grad.clamp(min=0) if active() else None

    calls = [0]

    def hook(_module, _inp, out):
        calls[0] += 1
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(rectify)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.ReLU, nn.Hardtanh))]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def _hooked_forward(forward, module):
    def wrapped(points):
        # The hooks are on the shared model: no other pass may run while they are there.
        with model_lock(module), rectifying_relu_hooks(module) as calls:
            out = forward(points)
        wrapped.relu_calls = calls[0]
        return out

    return wrapped


def _graph_forward(forward):
    """The native rule on each pass's own graph: the model is not touched, so no lock."""

    def wrapped(points):
        since = graph_rule.pass_start()
        out = forward(points)
        wrapped.relu_calls = graph_rule.rectify_graph(logits_of(out), since)
        return out

    return wrapped


# The ways of applying the guided rule faster than the operator-level rule, best first: the
# native rule on the recorded graph (no Python in the backward pass), then ReLU-module hooks
# (a Python call per ReLU). Each is used on a model only once a guided call has checked, on
# that model, that it gives the operator-level rule's map: functional or in-place-modified
# ReLU outputs defeat the hooks, clamp activations and ReLUs the graph does not reach defeat
# the native rule (see _check).
PATHS = ("graph", "hooks")


def _usable(path: str) -> bool:
    # The first guided call starts building the native rule; until it is ready the hooks serve.
    return path == "hooks" or graph_rule.prepare()


def _fast_forward(path: str, ctx: Context):
    return _graph_forward(ctx.forward) if path == "graph" else _hooked_forward(ctx.forward, ctx.module)


def _verdicts(module: nn.Module) -> dict:
    return model_state(module).setdefault("guided_paths", {})


def fast_path(module: nn.Module | None) -> str | None:
    """The best path checked to give this model's Guided Backprop map, or None: none has been,
    or a better one is usable but not yet checked (the next guided call checks it)."""
    if module is None:
        return None
    verdicts = _verdicts(module)
    for path in PATHS:
        if _usable(path):
            verdict = verdicts.get(path)
            if verdict is None:
                return None
            if verdict:
                return path
    return None


def guided_gradients(ctx: Context, x, targets, rule="guided", name="guided_backprop"):
    if rule != "guided" or ctx.module is None:
        return input_gradients(ctx, x, targets, forward=with_relu_rule(ctx.forward, rule, name))
    verdicts = _verdicts(ctx.module)
    for path in PATHS:
        if not _usable(path) or verdicts.get(path) is False:
            continue
        if verdicts.get(path) is None:
            break  # this call checks it
        try:
            return input_gradients(ctx, x, targets, forward=_fast_forward(path, ctx))
        except graph_rule.GraphRuleFailed:
            continue  # the native rule is off now; the next path redoes the pass
    ruled = with_relu_rule(ctx.forward, "guided", name)
    grads = input_gradients(ctx, x, targets, forward=ruled)
    unchecked = [p for p in PATHS if _usable(p) and p not in verdicts]
    if unchecked:
        verdicts[unchecked[0]] = _check(ctx, unchecked[0], x[:1], ctx.meta["targets"][:1],
                                        grads[:1], ruled.relu_calls)
    return grads


def _check(ctx: Context, path: str, x, targets, expected, relu_calls: int) -> bool:
    """One extra pass, once per model and path: the path must rectify as many ReLUs as the
    rule saw (none called as a function for the hooks, none left unreached by the graph,
    no clamp) and give the same map."""
    scratch = dataclasses.replace(ctx, stats=Stats(), meta={}, capture_logits=False)
    fast = _fast_forward(path, ctx)
    try:
        got = input_gradients(scratch, x, targets, forward=fast)
    except graph_rule.GraphRuleFailed:
        return False
    ctx.stats.passes += scratch.stats.passes
    if fast.relu_calls != relu_calls:
        return False
    scale = expected.abs().max().clamp_min(1e-30)
    return bool(((got - expected).abs().max() / scale) < 1e-4)


def guided_backprop(ctx: Context, x, targets, params):
    return guided_gradients(ctx, x, targets, "guided", "guided_backprop")


def deconvnet(ctx: Context, x, targets, params):
    return guided_gradients(ctx, x, targets, "deconv", "deconvnet")
