"""Guided Backprop (Springenberg et al. 2015) and DeconvNet (Zeiler & Fergus 2014): the
gradient with modified ReLU backward rules, applied by relu_rules without touching the model."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

import torch
from torch import nn

from ..engine import Stats, model_lock
from ..model_state import model_state
from ..relu_rules import with_relu_rule
from ..specs import MethodSpec
from .base import Context
from .gradient import input_gradients

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


# Per model: do ReLU-module hooks give the same Guided Backprop map as the operator-level
# rule? Decided once, on the model's first guided call (functional or in-place-modified
# ReLU outputs would make them differ).
def hooks_agree(module: nn.Module | None) -> bool:
    return module is not None and model_state(module).get("relu_hooks_agree", False)


def guided_gradients(ctx: Context, x, targets, rule="guided", name="guided_backprop"):
    if rule != "guided":
        return input_gradients(ctx, x, targets, forward=with_relu_rule(ctx.forward, rule, name))
    if hooks_agree(ctx.module):
        return input_gradients(ctx, x, targets, forward=_hooked_forward(ctx.forward, ctx.module))
    ruled = with_relu_rule(ctx.forward, "guided", name)
    grads = input_gradients(ctx, x, targets, forward=ruled)
    if ctx.module is not None and "relu_hooks_agree" not in model_state(ctx.module):
        model_state(ctx.module)["relu_hooks_agree"] = _check_hooks(ctx, x[:1], ctx.meta["targets"][:1], grads[:1],
                                                ruled.relu_calls)
    return grads


def _check_hooks(ctx: Context, x, targets, expected, relu_calls: int) -> bool:
    """One extra pass, once per model: the hooks must see every ReLU the rule saw (none
    called as a function) and give the same map."""
    scratch = dataclasses.replace(ctx, stats=Stats(), meta={}, capture_logits=False)
    hooked = _hooked_forward(ctx.forward, ctx.module)
    got = input_gradients(scratch, x, targets, forward=hooked)
    ctx.stats.passes += scratch.stats.passes
    if hooked.relu_calls != relu_calls:
        return False
    scale = expected.abs().max().clamp_min(1e-30)
    return bool(((got - expected).abs().max() / scale) < 1e-4)


def guided_backprop(ctx: Context, x, targets, params):
    return guided_gradients(ctx, x, targets, "guided", "guided_backprop")


def deconvnet(ctx: Context, x, targets, params):
    return guided_gradients(ctx, x, targets, "deconv", "deconvnet")
