"""Guided Grad-CAM (Selvaraju et al. 2017): Guided Backprop times the upsampled Grad-CAM map.

It lives with the guided rules because its speed comes from them: where a fast guided path
is checked for a model (see backprop.PATHS), one forward pass gives both the layer's
gradient (plain ReLUs) and the input's (guided ReLUs). The layer machinery is CAM's.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from saliency_core.engine.layers import capture_output, spatial_map
from saliency_core.engine.stream import logits_of, model_lock
from saliency_core.errors import SaliencyError
from saliency_core.methods.base import Context
from saliency_core.methods.cam import (
    CAM_PARAMS,
    gradcam,
    gradcam_formula,
    joined,
    run_layer_step,
    target_layer,
    upsample,
)
from saliency_core.methods.guided import graph_rule
from saliency_core.methods.guided.backprop import (
    fast_path,
    guided_gradients,
    rectifying_relu_hooks,
)
from saliency_core.methods.specs import MethodSpec

GUIDED_GRADCAM = MethodSpec(
    name="guided_gradcam", label="Guided Grad-CAM",
    description="Guided Backprop multiplied by the upsampled Grad-CAM map; inherits Guided "
    "Backprop's insensitivity to the weights.", family="input", params=CAM_PARAMS[:1],
    needs_relu=True, reference="Selvaraju et al. 2017", params_type="GuidedGradCamParams")


class _Switch:
    """Read by the ReLU hooks during the backward passes: plain first, then guided."""

    guided = False


def _guided_gradcam_pass(ctx: Context, xc, tc, layer, path: str):
    """(A, dscore/dA with plain ReLUs, dscore/dx with guided ReLUs, logits, targets) from one
    forward pass, with the guided rule on ``path`` (see backprop.PATHS)."""
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


def passes(_p: dict) -> int:
    """Grad-CAM's layer pass and Guided Backprop's input pass."""
    return 2


def guided_gradcam(ctx: Context, x, targets, params):
    """Guided Backprop times the upsampled Grad-CAM map.

    Where a faster guided path is known to give this model's Guided Backprop exactly (see
    backprop; checked on the model's first guided call), both maps come from one forward
    pass; otherwise, and on that first call, from a Grad-CAM pass and a Guided Backprop
    pass."""
    path = fast_path(ctx.module)
    if path is None:
        cam = gradcam(ctx, x, targets, {"layer": params["layer"], "upsample": False})
        targets = ctx.meta["targets"]  # the CAM pass resolved "predicted"; reuse it
        gb = guided_gradients(ctx, x, targets)
        return gb * upsample(cam, x.shape[-2:])[:, None]
    layer = target_layer(ctx, x, params["layer"])
    out, resolved = [], []

    def take(_stream, xc, tc):
        a, g_a, g_x, logits, t = _guided_gradcam_pass(ctx, xc, tc, layer, path)
        hw = x.shape[-2:]
        cam = gradcam_formula(spatial_map(ctx.module, a, hw), spatial_map(ctx.module, g_a, hw))
        return logits, (g_x * upsample(cam, x.shape[-2:])[:, None], t)

    def consume(_start, _stop, maps, t):
        out.append(maps)
        resolved.append(t)

    try:
        run_layer_step(ctx, x, targets, take, consume)
    except graph_rule.GraphRuleFailed:  # the native rule is off now: redo it on another path
        return guided_gradcam(ctx, x, targets, params)
    ctx.meta["targets"] = joined(resolved)
    return joined(out)
