"""Guided Backprop (Springenberg et al. 2015) and DeconvNet (Zeiler & Fergus 2014): the
gradient with modified ReLU backward rules, applied by relu_rules without touching the model."""

from __future__ import annotations

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


def guided_gradients(ctx: Context, x, targets, rule="guided", name="guided_backprop"):
    return input_gradients(ctx, x, targets, forward=with_relu_rule(ctx.forward, rule, name))


def guided_backprop(ctx: Context, x, targets, params):
    return guided_gradients(ctx, x, targets, "guided", "guided_backprop")


def deconvnet(ctx: Context, x, targets, params):
    return guided_gradients(ctx, x, targets, "deconv", "deconvnet")
