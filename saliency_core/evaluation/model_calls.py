"""Calling the model being evaluated: a locked forward, its probabilities and the targets."""

from __future__ import annotations

import torch

from saliency_core.engine.stream import Stats, forward_no_grad


def model_parts(model):
    """(forward, device, facts). The forward holds the model's lock: while another session's
    attribution has hooks on the shared model, a forward pass here would run those hooks too
    (a CAM hook would capture our activations instead of its own)."""
    from saliency_core.api import unwrap_model
    from saliency_core.engine.stream import locked_forward, module_device

    fn, module, facts = unwrap_model(model)
    return locked_forward(fn, module), (module_device(module) if module is not None else None), facts


def probabilities(fn, x: torch.Tensor, options=None) -> torch.Tensor:
    """Softmax of the model at x, through the stream (chunked, retried, stopped on request)."""
    return torch.softmax(forward_no_grad(fn, x, Stats(), options).float(), dim=1)


def targets_of(target, x: torch.Tensor, fn) -> torch.Tensor:
    """Targets as a CPU LongTensor [N], checked against the model's number of outputs."""
    from saliency_core.harness import resolve_targets

    probs = probabilities(fn, x)
    return resolve_targets(target, x.shape[0], torch.device("cpu"), probs.cpu())


def model_targets(model, x: torch.Tensor, target) -> torch.Tensor:
    """Targets as a CPU LongTensor [N], read from the model's logits at x."""
    from saliency_core.harness import resolve_targets

    fn, _device, _facts = model_parts(model)
    logits = forward_no_grad(fn, x, Stats())
    return resolve_targets(target, x.shape[0], x.device, logits).cpu()
