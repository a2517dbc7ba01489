"""Vanilla gradient (Simonyan et al. 2013) and gradient x input."""

from __future__ import annotations

import torch

from saliency_core.methods.base import Context
from saliency_core.methods.specs import MethodSpec

GRADIENT = MethodSpec(
    name="gradient",
    label="Vanilla gradient",
    description="Sensitivity of the target score to each input value: d f_c / d x.",
    family="input",
    text=True,
    reference="Simonyan et al. 2013",
)

GRADIENT_X_INPUT = MethodSpec(
    name="gradient_x_input",
    label="Gradient × input",
    description="Gradient times input: a first-order estimate of each value's contribution.",
    family="input",
    text=True,
    reference="Shrikumar et al. 2016",
)


def input_gradients(ctx: Context, x: torch.Tensor, targets, forward=None) -> torch.Tensor:
    """d score / d x at each input, one model pass per input, batched by the engine."""
    grads, resolved = [], []

    def make(start, stop):
        return x[start:stop], None if targets is None else targets[start:stop]

    def consume(start, stop, g, _scores, t):
        grads.append(g)
        resolved.append(t)

    stream = ctx.stream(forward)
    stream.logits_sink = ctx.logits_sink(x.shape[0])
    stream.run(x.shape[0], make, consume)
    # One chunk (the usual case) is handed back as it is, without a copy.
    ctx.meta["targets"] = resolved[0] if len(resolved) == 1 else torch.cat(resolved)
    return grads[0] if len(grads) == 1 else torch.cat(grads)


def plain(x, g):
    return g


def times_input(x, g):
    return g * x


def gradient(ctx: Context, x, targets, params):
    return plain(x, input_gradients(ctx, x, targets))


def gradient_x_input(ctx: Context, x, targets, params):
    return times_input(x, input_gradients(ctx, x, targets))
