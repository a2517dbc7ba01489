"""Guided Backprop and DeconvNet backward rules, applied to every ReLU a forward pass calls.

The rules are installed with a TorchFunctionMode for the duration of one forward pass, not by
swapping modules: the shared model is never changed, and ReLUs called functionally
(torch.relu, F.relu, Tensor.relu) or in place are covered as well as nn.ReLU modules.
The mode is thread-local, so other sessions using the same model are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .errors import MethodNotApplicableError


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        out = x.clamp(min=0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        # The backward gate of Springenberg et al. (rectify), then the forward gate (x > 0)
        # fused in one masked copy: two kernels instead of four, about a tenth of a ResNet's
        # backward pass otherwise.
        return torch.ops.aten.threshold_backward(grad.clamp(min=0), out, 0)


class _DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        # Zeiler & Fergus: the backward signal is rectified, the forward mask is not used.
        return grad.clamp(min=0)


_RELU_FUNCS = {
    torch.relu,
    torch.relu_,
    F.relu,
    F.relu_,
    torch.Tensor.relu,
    torch.Tensor.relu_,
}


class ReluRule(TorchFunctionMode):
    def __init__(self, rule: str):
        super().__init__()
        self.fn = {"guided": _GuidedReLU, "deconv": _DeconvReLU}[rule]
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_FUNCS:
            self.calls += 1
            # In-place variants return a fresh tensor: callers use the return value
            # (out = relu(out)), and an in-place write would clobber saved activations.
            return self.fn.apply(args[0])
        return func(*args, **kwargs)


def with_relu_rule(forward, rule: str, method: str):
    """Wraps a forward callable so its ReLUs follow ``rule``; fails clearly without ReLUs."""

    def wrapped(points):
        mode = ReluRule(rule)
        with mode:
            out = forward(points)
        wrapped.relu_calls = mode.calls  # lets callers check that hooks saw the same ReLUs
        if mode.calls == 0:
            raise MethodNotApplicableError(
                f"{method} modifies the backward pass of ReLU activations, and this model has "
                "none (transformers use GELU, for instance); use gradient, "
                "integrated_gradients or smoothgrad instead"
            )
        return out

    return wrapped
