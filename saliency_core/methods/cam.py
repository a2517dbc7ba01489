"""Class activation maps from one layer's activations A and gradients G = d score / d A.

Each variant below is only its weighting formula; capturing the layer, batching, reshaping
transformer tokens and upsampling are shared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..engine import _score, logits_of
from ..layers import capture_output, default_layer, resolve_module, to_spatial
from ..errors import SaliencyError
from ..specs import MethodSpec, Param
from .base import Context

CAM_PARAMS = (
    Param("layer", "layer", None, "Module path of the target layer (e.g. layer4, features.28); "
          "empty = the model's default, a late spatial layer.", label="Target layer"),
    Param("upsample", "bool", True, "Bilinear upsampling to the input size; off keeps the "
          "layer's own resolution.", label="Upsample", advanced=True),
)


def _spec(name, label, description, reference):
    return MethodSpec(name=name, label=label, description=description, family="cam",
                      params=CAM_PARAMS, reference=reference)


GRADCAM = _spec("gradcam", "Grad-CAM",
                "Layer activations weighted by their spatially averaged gradients, rectified: "
                "coarse, class-discriminative regions.", "Selvaraju et al. 2017")
GRADCAM_PLUS_PLUS = _spec("gradcam_plus_plus", "Grad-CAM++",
                          "Grad-CAM with weights from higher-order gradient terms; better for "
                          "several instances of a class.", "Chattopadhay et al. 2018")
HIRESCAM = _spec("hirescam", "HiResCAM",
                 "Element-wise gradient × activation summed over channels; faithful to the "
                 "layer's actual contribution.", "Draelos & Carin 2020")
GUIDED_GRADCAM = MethodSpec(
    name="guided_gradcam", label="Guided Grad-CAM",
    description="Guided Backprop multiplied by the upsampled Grad-CAM map; inherits Guided "
    "Backprop's insensitivity to the weights.", family="input", params=CAM_PARAMS[:1],
    needs_relu=True, reference="Selvaraju et al. 2017")

_default_layers: dict = {}


def target_layer(ctx: Context, x: torch.Tensor, path: str | None):
    if ctx.module is None:
        raise SaliencyError("CAM methods need an nn.Module to find the target layer in")
    if not path:
        path = ctx.default_layer
    if not path:
        key = (id(ctx.module), tuple(x.shape[1:]))
        path = _default_layers.get(key)
        if path is None:
            path = _default_layers[key] = default_layer(ctx.module, x[:1])
    ctx.meta["layer"] = path
    return resolve_module(ctx.module, path)


def activations_and_gradients(ctx: Context, x, targets, layer):
    """Spatial A and G [N, C, h, w] for each input's target, batched; backward stops at A."""
    acts, grads, resolved = [], [], []
    chunk = ctx.options.batch_size or 32
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk].detach().requires_grad_(True)
        tc = None if targets is None else targets[start:start + chunk]
        with torch.enable_grad(), capture_output(layer) as store:
            logits = logits_of(ctx.forward(xc))
            a = store.get("output")
            if a is None:
                raise SaliencyError("the target layer was not used in the forward pass; pick another")
            scores, t = _score(logits, tc)
            (g,) = torch.autograd.grad(scores.sum(), a)
        acts.append(to_spatial(a.detach()))
        grads.append(to_spatial(g.detach()))
        resolved.append(t)
        ctx.stats.passes += xc.shape[0]
    ctx.meta["targets"] = torch.cat(resolved)
    return torch.cat(acts), torch.cat(grads)


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


def guided_gradcam(ctx: Context, x, targets, params):
    from .guided import guided_gradients

    cam = gradcam(ctx, x, targets, {"layer": params["layer"], "upsample": False})
    targets = ctx.meta["targets"]  # the CAM pass resolved "predicted"; reuse it
    gb = guided_gradients(ctx, x, targets)
    return gb * _upsample(cam, x.shape[-2:])[:, None]
