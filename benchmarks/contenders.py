"""The implementations compared on each row, each prepared as a zero-argument callable.

- ours: ``saliency_core.attribute`` as a user calls it (automatic chunking).
- floor: the least work the row needs, written by hand: one forward and one input-only
  backward over exactly the required points (prepared beforehand, not timed), in evenly
  sized batches of the best batch size found for the model. For Grad-CAM the least work is
  a forward and a backward that stops at the layer, so that is its floor.
- captum, grad-cam (pytorch-grad-cam): the libraries' own classes, given the same batch
  size as the floor where they take one.
- reference: the naive loops of the user's reference document (reference_loops.py).

A builder returns (callable, close) or raises Skip with the reason shown in the table.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import saliency_core as sc
from saliency_core.engine.stream import balanced_chunk
from saliency_core.methods.integrated_gradients import quadrature_rule
from saliency_core.methods.smoothgrad import noisy_copies

from . import reference_loops as ref
from .setups import Config, Subject

CAM_METHODS = ("gradcam", "guided_gradcam")


class Skip(Exception):
    """This contender has no implementation of the row, or cannot run it here."""


def _nothing():
    return None


def _clear_grads(model):
    model.zero_grad(set_to_none=True)


# ours ---------------------------------------------------------------------------------

def ours(subject: Subject, cfg: Config, batch: int):
    params = dict(cfg.params)
    if cfg.method in CAM_METHODS:
        params["layer"] = subject.layer_path
    model, x, t = subject.model, subject.x, subject.target
    return (lambda: sc.attribute(model, x, cfg.method, target=t, **params)), _nothing


# floor --------------------------------------------------------------------------------

def floor_points(subject: Subject, cfg: Config):
    """(points [n, ...], weights [n], groups: points per (input, path), diffs) of the row:
    exactly the evaluations the method needs, built the way ours builds them."""
    x = subject.x
    p = cfg.params
    if cfg.method == "integrated_gradients":
        alphas, weights = quadrature_rule("gauss_legendre", p["steps"])
        a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        return a * x, torch.as_tensor(weights, dtype=x.dtype, device=x.device), p["steps"], x
    if cfg.method == "smoothgrad" and p.get("base") == "integrated_gradients":
        noisy = noisy_copies(x, p["samples"], p["sigma"], 0)
        alphas, weights = quadrature_rule("gauss_legendre", p["steps"])
        a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).view(1, -1, 1, 1, 1)
        points = (a * noisy[:, None]).reshape(-1, *x.shape[1:])
        w = torch.as_tensor(weights, dtype=x.dtype, device=x.device).repeat(p["samples"])
        return points, w, p["steps"], noisy
    if cfg.method == "smoothgrad":
        n = p["samples"]
        return noisy_copies(x, n, p["sigma"], 0), torch.full((n,), 1.0, device=x.device), n, None
    return x, torch.ones(1, device=x.device), 1, None


def floor(subject: Subject, cfg: Config, batch: int):
    model, t = subject.model, subject.target
    if cfg.method == "gradcam":
        return _floor_gradcam(subject)
    points, weights, group, diffs = floor_points(subject, cfg)
    n = points.shape[0]
    b = balanced_chunk(n, batch)

    def run():
        flat = torch.zeros(n // group, points[0].numel(), device=points.device, dtype=points.dtype)
        for i in range(0, n, b):
            p = points[i:i + b].detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model(p)[:, t].sum(), p)
            # The least bookkeeping the methods need: a weighted sum per input path.
            gs = g.reshape(p.shape[0], -1) * weights[i:i + b, None]
            flat.index_add_(0, torch.arange(i, i + p.shape[0], device=p.device) // group, gs)
        acc = flat.view(n // group, *points.shape[1:])
        if cfg.method == "smoothgrad" and diffs is None:
            return acc.mean(0, keepdim=True) / group
        if diffs is not None:
            return (acc * diffs).mean(0, keepdim=True)
        return acc * subject.x if cfg.method == "gradient_x_input" else acc

    return run, _nothing


def _floor_gradcam(subject: Subject):
    model, x, t = subject.model, subject.x, subject.target
    layer = subject.layer

    def run():
        store = {}
        handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
        try:
            out = model(x)
        finally:
            handle.remove()
        a = store["a"]
        (g,) = torch.autograd.grad(out[0, t], a)
        cam = F.relu((g.mean((2, 3), keepdim=True) * a.detach()).sum(1, keepdim=True))
        return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    return run, _nothing


# Captum -------------------------------------------------------------------------------

def captum(subject: Subject, cfg: Config, batch: int):
    try:
        from captum.attr import (
            GuidedBackprop,
            GuidedGradCam,
            InputXGradient,
            IntegratedGradients,
            LayerAttribution,
            LayerGradCam,
            NoiseTunnel,
            Saliency,
        )
    except ImportError:
        raise Skip("captum not installed") from None
    model, x, t, p = subject.model, subject.x, subject.target, cfg.params
    m = cfg.method
    def stdev():
        return p["sigma"] * float(x.max() - x.min())

    if m == "gradient":
        return (lambda: Saliency(model).attribute(x, target=t, abs=False)), _nothing
    if m == "gradient_x_input":
        return (lambda: InputXGradient(model).attribute(x, target=t)), _nothing
    if m == "integrated_gradients":
        return (lambda: IntegratedGradients(model).attribute(
            x, target=t, n_steps=p["steps"], method="gausslegendre",
            internal_batch_size=min(batch, p["steps"]))), _nothing
    if m == "smoothgrad" and p.get("base") == "integrated_gradients":
        return (lambda: NoiseTunnel(IntegratedGradients(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=p["samples"], stdevs=stdev(), target=t,
            n_steps=p["steps"], method="gausslegendre",
            internal_batch_size=min(batch, cfg.points))), _nothing
    if m == "smoothgrad":
        return (lambda: NoiseTunnel(Saliency(model)).attribute(
            x, nt_type="smoothgrad", nt_samples=p["samples"], stdevs=stdev(), target=t,
            nt_samples_batch_size=min(batch, p["samples"]), abs=False)), _nothing
    if m == "guided_backprop":
        return (lambda: GuidedBackprop(model).attribute(x, target=t)), _nothing
    if m == "gradcam":
        layer = subject.layer

        def run():
            cam = LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
            return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")[:, 0]

        return run, _nothing
    if m == "guided_gradcam":
        layer = subject.layer
        return (lambda: GuidedGradCam(model, layer).attribute(x, target=t, interpolate_mode="bilinear")), _nothing
    raise Skip("no such method")


# pytorch-grad-cam ---------------------------------------------------------------------

def gradcam_lib(subject: Subject, cfg: Config, batch: int):
    if cfg.method not in ("gradcam", "guided_backprop", "guided_gradcam"):
        raise Skip("not in pytorch-grad-cam")
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise Skip("pytorch-grad-cam not installed") from None
    model, x, t = subject.model, subject.x, subject.target
    layer = subject.layer
    targets = [ClassifierOutputTarget(t)]

    def cam_map():
        # Its documented idiom: a CAM object per use, its hooks released on exit (hooks left
        # on the shared model would also slow every other contender down).
        with GradCAM(model=model, target_layers=[layer]) as cam:
            return cam(input_tensor=x, targets=targets)

    # Its guided model swaps ReLU modules in place (and back, as new non-in-place ones):
    # a copy keeps the shared model as it was.
    gb = GuidedBackpropReLUModel(model=copy.deepcopy(model), device=x.device) \
        if cfg.method != "gradcam" else None

    def close():
        _clear_grads(model)

    if cfg.method == "gradcam":
        return (lambda: torch.from_numpy(cam_map())), close
    if cfg.method == "guided_backprop":
        return (lambda: torch.from_numpy(gb(x, target_category=t)).permute(2, 0, 1)[None]), close

    def guided_gradcam():
        mask = cam_map()[0]
        return torch.from_numpy(gb(x, target_category=t) * mask[..., None]).permute(2, 0, 1)[None]

    return guided_gradcam, close


# the reference document's loops -----------------------------------------------------

def reference(subject: Subject, cfg: Config, batch: int, memory_ok=lambda points: True):
    model, x, t, p = subject.model, subject.x, subject.target, cfg.params
    m = cfg.method

    def close():
        _clear_grads(model)

    if m == "gradient":
        return (lambda: ref.vanilla_gradient(model, x, t)), close
    if m == "gradient_x_input":
        return (lambda: ref.gradient_x_input(model, x, t)), close
    if m == "integrated_gradients":
        if not memory_ok(p["steps"] + 1):
            raise Skip(f"{p['steps'] + 1} points in one batch exceed the memory limit")
        return (lambda: ref.integrated_gradients(model, x, t, p["steps"])), close
    if m == "smoothgrad" and p.get("base") == "integrated_gradients":
        if not memory_ok(p["steps"] + 1):
            raise Skip(f"{p['steps'] + 1} points in one batch exceed the memory limit")
        return (lambda: ref.smooth_integrated_gradients(model, x, t, p["samples"], p["sigma"], p["steps"])), close
    if m == "smoothgrad":
        return (lambda: ref.smoothgrad(model, x, t, p["samples"], p["sigma"])), close
    guided = ref.guided_model(model) if m in ("guided_backprop", "guided_gradcam") else None
    if m == "guided_backprop":
        return (lambda: ref.guided_backprop(guided, x, t)), close
    layer = subject.layer

    def cam_map():
        # Hooks for the call only, so they do not slow the other contenders down.
        cam = ref.GradCAM(model, layer)
        try:
            return cam(x, t)
        finally:
            cam.close()

    def close_all():
        _clear_grads(model)
        if guided is not None:
            _clear_grads(guided)

    if m == "gradcam":
        return cam_map, close_all
    return (lambda: ref.guided_backprop(guided, x, t) * cam_map()[:, None]), close_all


CONTENDERS = {
    "ours": ours,
    "floor": floor,
    "captum": captum,
    "grad-cam": gradcam_lib,
    "reference": reference,
}
