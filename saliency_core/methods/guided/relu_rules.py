"""Guided Backprop and DeconvNet backward rules, applied to every ReLU a forward pass calls,
and to the activations that clip like one (ReLU6, Hardtanh, clamp: MobileNet, EfficientNet-Lite).

The rules are installed with a TorchFunctionMode for the duration of one forward pass, not by
swapping modules: the shared model is never changed, and ReLUs called functionally
(torch.relu, F.relu, Tensor.relu) or in place are covered as well as nn.ReLU modules.
The mode is thread-local, so other sessions using the same model are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from saliency_core.errors import MethodNotApplicableError


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


class _GuidedClip(torch.autograd.Function):
    """The guided rule for an activation that clips to [lo, hi] (ReLU6, Hardtanh, clamp): a
    positive gradient passes only where the input was in the linear range, as for a ReLU."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(_linear_range(x, lo, hi))
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (linear,) = ctx.saved_tensors
        return torch.where(linear, grad.clamp(min=0), 0.0), None, None


class _DeconvClip(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0), None, None


def _linear_range(x, lo, hi):
    """Where clamp(x, lo, hi) has slope 1: strictly inside, as PyTorch's own backward gates."""
    inside = torch.ones_like(x, dtype=torch.bool)
    if lo is not None:
        inside &= x > lo
    if hi is not None:
        inside &= x < hi
    return inside


def _hardtanh_bounds(args, kwargs):
    return (args[1] if len(args) > 1 else kwargs.get("min_val", -1.0),
            args[2] if len(args) > 2 else kwargs.get("max_val", 1.0))


def _clamp_bounds(args, kwargs):
    return (args[1] if len(args) > 1 else kwargs.get("min"),
            args[2] if len(args) > 2 else kwargs.get("max"))


# Clipping activations -> how to read their bounds from the call's arguments. In-place forms
# are covered as for ReLU: the rule returns a fresh tensor and callers use the return value.
_CLIP_FUNCS = {
    F.relu6: lambda args, kwargs: (0.0, 6.0),
    F.hardtanh: _hardtanh_bounds,
    F.hardtanh_: _hardtanh_bounds,
    torch.clamp: _clamp_bounds,
    torch.clip: _clamp_bounds,
    torch.clamp_: _clamp_bounds,
    torch.clip_: _clamp_bounds,
    torch.Tensor.clamp: _clamp_bounds,
    torch.Tensor.clip: _clamp_bounds,
    torch.Tensor.clamp_: _clamp_bounds,
    torch.Tensor.clip_: _clamp_bounds,
}

# Activations with no guided rule, by what a user would call them. Finding one makes the
# guided methods refuse instead of silently passing the plain gradient through it.
_NO_RULE = {
    F.gelu: "GELU", F.silu: "SiLU", F.hardswish: "Hardswish", F.mish: "Mish", F.elu: "ELU",
    F.selu: "SELU", F.celu: "CELU", F.leaky_relu: "LeakyReLU", F.leaky_relu_: "LeakyReLU",
    F.prelu: "PReLU", F.rrelu: "RReLU", F.softplus: "Softplus",
}
# Gates (squeeze-excitation, attention) rather than activations: named when nothing else is
# found, but not a reason to refuse a ReLU network that also uses them.
_GATES = {
    torch.sigmoid: "Sigmoid", torch.Tensor.sigmoid: "Sigmoid", F.sigmoid: "Sigmoid",
    F.hardsigmoid: "Hardsigmoid", torch.tanh: "Tanh", torch.Tensor.tanh: "Tanh",
    F.tanh: "Tanh",
}


class ReluRule(TorchFunctionMode):
    def __init__(self, rule: str):
        super().__init__()
        self.fn = {"guided": _GuidedReLU, "deconv": _DeconvReLU}[rule]
        self.clip = {"guided": _GuidedClip, "deconv": _DeconvClip}[rule]
        self.calls = 0
        self.unruled: dict[str, int] = {}  # activations seen that have no rule, with counts
        self.gates: dict[str, int] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_FUNCS:
            self.calls += 1
            # In-place variants return a fresh tensor: callers use the return value
            # (out = relu(out)), and an in-place write would clobber saved activations.
            return self.fn.apply(args[0])
        if func in _CLIP_FUNCS and _plain_bounds(*_CLIP_FUNCS[func](args, kwargs)):
            self.calls += 1
            return self.clip.apply(args[0], *_CLIP_FUNCS[func](args, kwargs))
        for table, seen in ((_NO_RULE, self.unruled), (_GATES, self.gates)):
            name = table.get(func)
            if name is not None:
                seen[name] = seen.get(name, 0) + 1
        return func(*args, **kwargs)


def _plain_bounds(lo, hi) -> bool:
    """Numbers (or None) on at least one side: a clamp between tensors is no activation."""
    numbers = [b for b in (lo, hi) if b is not None]
    return bool(numbers) and all(isinstance(b, (int, float)) for b in numbers)


def _named(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n} call{'s' if n != 1 else ''})" for name, n in counts.items())


def with_relu_rule(forward, rule: str, method: str):
    """Wraps a forward callable so its ReLUs follow ``rule``; fails clearly without ReLUs."""

    def wrapped(points):
        mode = ReluRule(rule)
        with mode:
            out = forward(points)
        wrapped.relu_calls = mode.calls  # lets callers check that hooks saw the same ReLUs
        if mode.calls == 0 or mode.unruled:
            raise MethodNotApplicableError(_refusal(method, mode))
        return out

    return wrapped


def _refusal(method: str, mode: ReluRule) -> str:
    rule = (f"{method} changes the backward pass of ReLU-type activations (ReLU, ReLU6, "
            "Hardtanh, clamp)")
    alternatives = "use gradient, integrated_gradients or smoothgrad instead"
    if mode.calls:
        return (f"{rule}, but this model also uses {_named(mode.unruled)}, which has no guided "
                f"rule: the map would mix guided and plain gradients; {alternatives}")
    found = mode.unruled or mode.gates
    what = f"uses {_named(found)}" if found else "calls no activation function this rule knows"
    return f"{rule}; this model has none: its forward pass {what}; {alternatives}"
