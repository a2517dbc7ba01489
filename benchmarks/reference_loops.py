"""The naive loops of the user's reference document (shared/seed), rewritten as functions.

They keep the document's cost structure on purpose, since that is what they stand for in
the benchmark: ``.backward()`` on the model (so every parameter gradient is computed too),
Integrated Gradients with all steps + 1 path points in one batch and a trapezoid average,
SmoothGrad one noisy copy at a time, Guided Backprop by swapping the ReLU modules of a copy
of the model, and Grad-CAM by forward and full backward hooks with min-max scaling.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def vanilla_gradient(model, x, target):
    x = x.clone().requires_grad_(True)
    out = model(x)
    model.zero_grad()
    out[0, target].backward()
    return x.grad.detach()


def gradient_x_input(model, x, target):
    return vanilla_gradient(model, x, target) * x


def integrated_gradients(model, x, target, steps, baseline=None):
    baseline = torch.zeros_like(x) if baseline is None else baseline
    alphas = torch.linspace(0, 1, steps + 1, device=x.device)
    scaled = torch.stack([baseline + a * (x - baseline) for a in alphas]).squeeze(1)
    scaled.requires_grad = True
    out = model(scaled)
    model.zero_grad()
    out[:, target].sum().backward()
    g = scaled.grad
    avg = ((g[:-1] + g[1:]) / 2).mean(0)
    return ((x - baseline) * avg).detach()


def smoothgrad(model, x, target, samples, noise_level):
    sigma = noise_level * (x.max() - x.min())
    grads = []
    for _ in range(samples):
        noisy = x + torch.randn_like(x) * sigma
        noisy.requires_grad = True
        out = model(noisy)
        model.zero_grad()
        out[0, target].backward()
        grads.append(noisy.grad.detach().clone())
    return torch.stack(grads).mean(0)


def smooth_integrated_gradients(model, x, target, samples, noise_level, steps):
    sigma = noise_level * (x.max() - x.min())
    maps = [integrated_gradients(model, x + torch.randn_like(x) * sigma, target, steps)
            for _ in range(samples)]
    return torch.stack(maps).mean(0)


class _GuidedReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inp):
        ctx.save_for_backward(inp)
        return inp.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (inp,) = ctx.saved_tensors
        grad = grad_output.clone()
        grad[inp < 0] = 0
        grad[grad_output < 0] = 0
        return grad


class _GuidedReLU(nn.Module):
    def forward(self, x):
        return _GuidedReLUFunction.apply(x)


def guided_model(model):
    """The document swaps every nn.ReLU for a guided one; here on a copy, so the benchmark's
    shared model stays as it was."""
    guided = copy.deepcopy(model)

    def swap(module):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, name, _GuidedReLU())
            else:
                swap(child)

    swap(guided)
    return guided.eval()


def guided_backprop(guided, x, target):
    return vanilla_gradient(guided, x, target)


class GradCAM:
    """Hooks on the target layer keep its output and output gradient; the document leaves
    them registered for the object's life, so they are removed in close() here. Guided
    Grad-CAM, which the document only describes, is guided_backprop(...) * this map."""

    def __init__(self, model, layer):
        self.model = model
        self.features = self.gradients = None
        self.handles = [
            layer.register_forward_hook(self._keep_features),
            layer.register_full_backward_hook(self._keep_gradients),
        ]

    def _keep_features(self, _module, _inp, out):
        self.features = out.detach()

    def _keep_gradients(self, _module, _grad_in, grad_out):
        self.gradients = grad_out[0].detach()

    def __call__(self, x, target):
        out = self.model(x)
        self.model.zero_grad()
        out[0, target].backward()
        weights = self.gradients.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * self.features).sum(1, keepdim=True))
        cam = cam - cam.min()
        cam = cam / (cam.max() + 1e-8)
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def close(self):
        for h in self.handles:
            h.remove()

