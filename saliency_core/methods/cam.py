"""Class activation maps from one layer's activations A and gradients G = d score / d A.

Each variant below is only its weighting formula; capturing the layer, batching, reshaping
transformer tokens and upsampling are shared.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from saliency_core.engine.layers import (
    capture_output,
    default_layer,
    module_path,
    resolve_module,
    to_spatial,
)
from saliency_core.engine.model_state import remembered
from saliency_core.engine.stream import layer_gradient, logits_of, model_lock
from saliency_core.errors import SaliencyError
from saliency_core.methods.base import Context
from saliency_core.methods.guided import graph_rule
from saliency_core.methods.guided.backprop import (
    fast_path,
    guided_gradients,
    rectifying_relu_hooks,
)
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
                      params=CAM_PARAMS, reference=reference)


GRADCAM = cam_spec("gradcam", "Grad-CAM",
                "Layer activations weighted by their spatially averaged gradients, rectified: "
                "coarse, class-discriminative regions.", "Selvaraju et al. 2017")
GRADCAM_PLUS_PLUS = cam_spec("gradcam_plus_plus", "Grad-CAM++",
                          "Grad-CAM with weights from higher-order gradient terms; better for "
                          "several instances of a class.", "Chattopadhay et al. 2018")
HIRESCAM = cam_spec("hirescam", "HiResCAM",
                 "Element-wise gradient × activation summed over channels; faithful to the "
                 "layer's actual contribution.", "Draelos & Carin 2020")
GUIDED_GRADCAM = MethodSpec(
    name="guided_gradcam", label="Guided Grad-CAM",
    description="Guided Backprop multiplied by the upsampled Grad-CAM map; inherits Guided "
    "Backprop's insensitivity to the weights.", family="input", params=CAM_PARAMS[:1],
    needs_relu=True, reference="Selvaraju et al. 2017")


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
        return logits, (to_spatial(a.detach()), to_spatial(g.detach()), t)

    def consume(_start, _stop, a, g, t):
        acts.append(a)
        grads.append(g)
        resolved.append(t)

    _run_layer_step(ctx, x, targets, take, consume)
    ctx.meta["targets"] = _joined(resolved)
    return _joined(acts), _joined(grads)


def _run_layer_step(ctx: Context, x, targets, take, consume):
    def make(start, stop):
        return x[start:stop].detach(), None if targets is None else targets[start:stop]

    stream = ctx.stream()
    stream.logits_sink = ctx.logits_sink(x.shape[0])
    stream.run(x.shape[0], make, consume, step=layer_gradient(take))


def _joined(parts):
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


def _upsample(cam, size):
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def cam_method(formula):
    def compute(ctx: Context, x, targets, params):
        if x.dim() != 4:
            raise SaliencyError("CAM methods need image inputs [N, C, H, W]")
        layer = target_layer(ctx, x, params["layer"])
        a, g = activations_and_gradients(ctx, x, targets, layer)
        cam = formula(a, g)
        return _upsample(cam, x.shape[-2:]) if params["upsample"] else cam

    return compute


gradcam = cam_method(gradcam_formula)
gradcam_plus_plus = cam_method(gradcam_plus_plus_formula)
hirescam = cam_method(hirescam_formula)


class _Switch:
    """Read by the ReLU hooks during the backward passes: plain first, then guided."""

    guided = False


def _guided_gradcam_pass(ctx: Context, xc, tc, layer, path: str):
    """(A, dscore/dA with plain ReLUs, dscore/dx with guided ReLUs, logits, targets) from one
    forward pass, with the guided rule on ``path`` (see methods.guided.PATHS)."""
    with model_lock(ctx.module):  # the layer hook (and ReLU hooks) on the shared model
        return _guided_gradcam_pass_locked(ctx, xc, tc, layer, path)


def _guided_gradcam_pass_locked(ctx: Context, xc, tc, layer, path: str):
    # The ReLU-module hooks are put on during the forward pass and rectify only once the
    # switch is thrown; the native rule is put on the recorded graph between the two passes.
    switch = _Switch()
    xc = xc.detach().requires_grad_(True)
    with torch.enable_grad(), capture_output(layer) as store:
        assert ctx.module is not None, "CAM methods need a module (checked before the pass)"
        hooks = rectifying_relu_hooks(ctx.module, active=lambda: switch.guided) if path == "hooks" else nullcontext()
        since = graph_rule.pass_start() if path == "graph" else 0
        with hooks:
            logits = logits_of(ctx.forward(xc))
        a = store.get("output")
        if a is None:
            raise SaliencyError("the target layer was not used in the forward pass; pick another")
        scores, t = ctx.score(logits, tc)
        if path == "graph" and graph_rule.rectifiers_above(logits, a, since) == 0:
            # No rectifier between the layer and the score (ResNet's layer4, MobileNet's last
            # block): the guided pass carries the plain gradient to the layer, and one
            # backward pass gives both maps.
            graph_rule.rectify_graph(logits, since)
            g_a, g_x = torch.autograd.grad(scores.sum(), (a, xc))
            return a.detach(), g_a, g_x, logits.detach(), t
        (g_a,) = torch.autograd.grad(scores.sum(), a, retain_graph=True)
        if path == "graph":
            graph_rule.rectify_graph(logits, since)
        switch.guided = True
        (g_x,) = torch.autograd.grad(scores.sum(), xc)
    return a.detach(), g_a, g_x, logits.detach(), t


def guided_gradcam_passes(_p: dict) -> int:
    """Grad-CAM's layer pass and Guided Backprop's input pass."""
    return 2


def guided_gradcam(ctx: Context, x, targets, params):
    """Guided Backprop times the upsampled Grad-CAM map.

    Where a faster guided path is known to give this model's Guided Backprop exactly (see
    methods.guided; checked on the model's first guided call), both maps come from one
    forward pass; otherwise, and on that first call, from a Grad-CAM pass and a Guided
    Backprop pass."""
    path = fast_path(ctx.module)
    if path is None:
        cam = gradcam(ctx, x, targets, {"layer": params["layer"], "upsample": False})
        targets = ctx.meta["targets"]  # the CAM pass resolved "predicted"; reuse it
        gb = guided_gradients(ctx, x, targets)
        return gb * _upsample(cam, x.shape[-2:])[:, None]
    layer = target_layer(ctx, x, params["layer"])
    out, resolved = [], []

    def take(_stream, xc, tc):
        a, g_a, g_x, logits, t = _guided_gradcam_pass(ctx, xc, tc, layer, path)
        cam = gradcam_formula(to_spatial(a), to_spatial(g_a))
        return logits, (g_x * _upsample(cam, x.shape[-2:])[:, None], t)

    def consume(_start, _stop, maps, t):
        out.append(maps)
        resolved.append(t)

    try:
        _run_layer_step(ctx, x, targets, take, consume)
    except graph_rule.GraphRuleFailed:  # the native rule is off now: redo it on another path
        return guided_gradcam(ctx, x, targets, params)
    ctx.meta["targets"] = _joined(resolved)
    return _joined(out)
