"""Class activation maps from one layer's activations A and gradients G = d score / d A.

Each variant below is only its weighting formula; capturing the layer, batching, reshaping
transformer tokens and upsampling are shared.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from saliency_core.engine.layers import (
    capture_output,
    default_layer,
    module_path,
    resolve_module,
    spatial_map,
    unmappable,
)
from saliency_core.engine.model_state import remembered
from saliency_core.engine.stream import layer_gradient, logits_of, model_lock
from saliency_core.errors import LayerError, SaliencyError
from saliency_core.methods.base import Context
from saliency_core.methods.specs import MethodSpec, Param

CAM_PARAMS = (
    Param("layer", "layer", None, "Module path of the target layer (e.g. layer4, features.28); "
          "empty = the model's default, a late spatial layer.", label="Target layer"),
    Param("upsample", "bool", True, "Bilinear upsampling to the input size; off keeps the "
          "layer's own resolution.", label="Upsample", advanced=True),
)


def cam_spec(name, label, description, reference):
    """The spec of a CAM variant: a layer and upsampling, nothing else to choose."""
    return MethodSpec(name=name, label=label, description=description, family="cam",
                      params=CAM_PARAMS, reference=reference, params_type="CamParams")


GRADCAM = cam_spec("gradcam", "Grad-CAM",
                "Layer activations weighted by their spatially averaged gradients, rectified: "
                "coarse, class-discriminative regions.", "Selvaraju et al. 2017")
GRADCAM_PLUS_PLUS = cam_spec("gradcam_plus_plus", "Grad-CAM++",
                          "Grad-CAM with weights from higher-order gradient terms; better for "
                          "several instances of a class.", "Chattopadhay et al. 2018")
HIRESCAM = cam_spec("hirescam", "HiResCAM",
                 "Element-wise gradient × activation summed over channels; faithful to the "
                 "layer's actual contribution.", "Draelos & Carin 2020")


def target_layer(ctx: Context, x: torch.Tensor, path):
    """The layer module for ``path``: a module path, the module itself (as Captum and
    pytorch-grad-cam take it), or empty for the model's default."""
    if ctx.module is None:
        raise SaliencyError("CAM methods need an nn.Module to find the target layer in")
    if isinstance(path, torch.nn.Module):
        ctx.meta["layer"] = module_path(ctx.module, path)
        return path
    if not path:
        path = ctx.default_layer
    if not path:
        path = remembered(ctx.module, "default_cam_layer", tuple(x.shape[1:]),
                          lambda: default_layer(ctx.module, x[:1]))
    ctx.meta["layer"] = path
    try:
        # A walk down the path, not a listing of every module of the model on each call.
        if path:
            return ctx.module.get_submodule(path)
    except AttributeError:
        pass
    return resolve_module(ctx.module, path)  # the error lists the candidates


@contextmanager
def layer_as_leaf(layer):
    """For a forward run under no_grad: the layer's output becomes the start of the graph.

    Nothing upstream of the layer is recorded or kept, so a CAM pass costs a plain forward
    plus the short backward from the score to the layer. The hook hands on a clone of a
    fresh leaf, so an in-place op that follows the layer (``out += identity``) still works and
    the captured tensor is, as without the hook, the one the rest of the model used.
    """
    store: dict = {}

    def hook(_module, _inp, out):
        first = out if isinstance(out, torch.Tensor) else _first_tensor(out)
        if first is None or not first.is_floating_point():
            return None  # leave it; the caller falls back to a full graph
        torch.set_grad_enabled(True)  # the rest of this forward records a graph
        a = first.detach().requires_grad_(True).clone()
        store["output"] = a
        if isinstance(out, torch.Tensor):
            return a
        return type(out)((a, *out[1:]))

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def _first_tensor(out):
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _layer_pass(ctx: Context, xc, tc, layer):
    """(A, dscore/dA, logits, targets) for one chunk; the graph starts at the layer when the
    layer's output can be swapped for a leaf, else the whole forward is recorded."""
    with model_lock(ctx.module):  # the layer hook is on the shared model while it is there
        return _layer_pass_locked(ctx, xc, tc, layer)


def _layer_pass_locked(ctx: Context, xc, tc, layer):
    with torch.no_grad(), layer_as_leaf(layer) as store:
        logits = logits_of(ctx.forward(xc))
        a = store.get("output")
        if a is not None and logits.requires_grad:
            with torch.enable_grad():
                scores, t = ctx.score(logits, tc)
                (g,) = torch.autograd.grad(scores.sum(), a)
            return a, g, logits, t
    xc = xc.detach().requires_grad_(True)
    with torch.enable_grad(), capture_output(layer) as store:
        logits = logits_of(ctx.forward(xc))
        a = store.get("output")
        if a is None:
            raise SaliencyError("the target layer was not used in the forward pass; pick another")
        scores, t = ctx.score(logits, tc)
        (g,) = torch.autograd.grad(scores.sum(), a)
    return a, g, logits, t


def activations_and_gradients(ctx: Context, x, targets, layer):
    """Spatial A and G [N, C, h, w] for each input's target, batched by the stream; backward
    stops at A."""
    acts, grads, resolved = [], [], []

    def take(_stream, xc, tc):
        a, g, logits, t = _layer_pass(ctx, xc, tc, layer)
        hw = x.shape[-2:]
        return logits, (spatial_map(ctx.module, a.detach(), hw),
                        spatial_map(ctx.module, g.detach(), hw), t)

    def consume(_start, _stop, a, g, t):
        acts.append(a)
        grads.append(g)
        resolved.append(t)

    run_layer_step(ctx, x, targets, take, consume)
    ctx.meta["targets"] = joined(resolved)
    return joined(acts), joined(grads)


def run_layer_step(ctx: Context, x, targets, take, consume):
    """Runs ``take`` (stream, x chunk, targets chunk) -> (logits, parts) over x in the
    stream's chunks, handing each chunk's parts to ``consume`` (start, stop, *parts)."""
    def make(start, stop):
        return x[start:stop].detach(), None if targets is None else targets[start:stop]

    stream = ctx.stream()
    stream.logits_sink = ctx.logits_sink(x.shape[0])
    stream.run(x.shape[0], make, consume, step=layer_gradient(take))


def joined(parts):
    """Per-chunk tensors as one; a single chunk (the usual case) without a copy."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def gradcam_formula(a, g):
    weights = g.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * a).sum(1))


def gradcam_plus_plus_formula(a, g):
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (F.relu(g) * alpha).sum(dim=(2, 3), keepdim=True)
    return F.relu((weights * a).sum(1))


def hirescam_formula(a, g):
    return F.relu((g * a).sum(1))


def upsample(cam, size):
    """[N, h, w] maps bilinearly resized to ``size`` (the input's H, W)."""
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def cam_method(formula):
    def compute(ctx: Context, x, targets, params):
        if x.dim() != 4:
            raise SaliencyError("CAM methods need image inputs [N, C, H, W]")
        layer = target_layer(ctx, x, params["layer"])
        try:
            a, g = activations_and_gradients(ctx, x, targets, layer)
        except LayerError as exc:
            assert ctx.module is not None  # target_layer found the layer in it
            raise unmappable(ctx.module, x[:1], exc) from exc
        cam = formula(a, g)
        return upsample(cam, x.shape[-2:]) if params["upsample"] else cam

    return compute


gradcam = cam_method(gradcam_formula)
gradcam_plus_plus = cam_method(gradcam_plus_plus_formula)
hirescam = cam_method(hirescam_formula)
