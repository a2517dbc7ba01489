"""The method registry: each name maps to its spec, its compute function and what it is.

A method says what it is here (wraps another method, multiplies by the input, needs a layer,
has a completeness check, can be refined, ...); nothing outside a method's own module reads
its name. Adding a method is its module and one line below (then, if it has parameters,
``python -m saliency_core.methods.typed_params --write`` regenerates their TypedDict in
saliency_core/params.py; a test says so when it is forgotten).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from saliency_core.errors import UnknownMethodError
from saliency_core.methods import (
    attention,
    cam,
    gradient,
    integrated_gradients,
    layercam,
    smoothgrad,
    xgradcam,
)
from saliency_core.methods.guided import backprop
from saliency_core.methods.guided import gradcam as guided_gradcam
from saliency_core.methods.specs import MethodSpec


@dataclass(frozen=True)
class Method:
    spec: MethodSpec
    # (ctx, x, targets, params) -> raw attribution; a wrapper's is
    # (ctx, x, targets, params, base: Method, base_params).
    compute: Callable
    # True when every gradient is taken at the input itself, so "predicted" can be read
    # from the same pass instead of costing a separate forward.
    at_input: bool = True
    wraps: bool = False  # runs around the method named by its "base" parameter
    times_input: bool = False  # the attribution includes the input (x · ∂f/∂x...)
    needs_layer: bool = False  # reads an image layer's activations: not for text
    # Reads attention probabilities (vision transformers only); attention.attention_problem
    # says why a model cannot run it.
    needs_attention: bool = False
    # (ctx, attribution, score) -> metadata entries that check an axiom (IG: completeness).
    completeness: Callable | None = None
    # Refinement: the count parameter and (ctx, x, targets, p, [base, base_p,] shelf) ->
    # (attribution, points reused), evaluating only what no kept run has.
    refine_count: str | None = None
    refine: Callable | None = None
    # (p, base_p, count) -> the smaller counts a run at count reuses (what a coarse-to-fine
    # ladder may stop at on the way).
    refine_nested: Callable | None = None
    # (A or x, gradient) -> attribution: lets several targets share one forward pass and
    # one batched backward (multi_target). CAM formulas take the layer's A and dscore/dA.
    from_gradients: Callable | None = None
    # False when one input's result depends on the others in the call (SmoothGrad's noise is
    # drawn per position), so requests must not be merged into one batch.
    batchable: bool = True
    # (full params) -> model passes (a forward and an input backward per point) one input
    # costs; a wrapper's is how many times it runs its base. For the app's cost estimate.
    passes: Callable[[dict], int] = lambda _p: 1
    # SmoothGrad may run it on noisy copies (offered as its "base"): an input-space map that
    # averages meaningfully over copies. Text models are offered those whose spec has text.
    smoothable: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    def includes_input(self, params: dict) -> bool:
        """Whether the attribution is input-weighted, through the base method for a wrapper."""
        if self.wraps:
            return get(params.get("base", self.spec.param("base").default)).times_input
        return self.times_input


def _cam(spec: MethodSpec, formula) -> Method:
    return Method(spec, cam.cam_method(formula), needs_layer=True, from_gradients=formula)


# In the order the pages and the CLI list them.
_METHODS = (
    Method(gradient.GRADIENT, gradient.gradient, from_gradients=gradient.plain, smoothable=True),
    Method(gradient.GRADIENT_X_INPUT, gradient.gradient_x_input, times_input=True,
           from_gradients=gradient.times_input, smoothable=True),
    Method(integrated_gradients.INTEGRATED_GRADIENTS, integrated_gradients.integrated_gradients,
           at_input=False, times_input=True, completeness=integrated_gradients.completeness,
           refine_count="steps", refine=integrated_gradients.refine,
           refine_nested=integrated_gradients.refine_nested, passes=integrated_gradients.passes,
           smoothable=True),
    Method(smoothgrad.SMOOTHGRAD, smoothgrad.smooth, at_input=False, wraps=True,
           refine_count="samples", refine=smoothgrad.refine,
           refine_nested=smoothgrad.refine_nested, batchable=False, passes=smoothgrad.passes),
    Method(backprop.GUIDED_BACKPROP, backprop.guided_backprop, smoothable=True),
    Method(backprop.DECONVNET, backprop.deconvnet, smoothable=True),
    _cam(cam.GRADCAM, cam.gradcam_formula),
    _cam(cam.GRADCAM_PLUS_PLUS, cam.gradcam_plus_plus_formula),
    _cam(cam.HIRESCAM, cam.hirescam_formula),
    _cam(layercam.LAYERCAM, layercam.layercam_formula),
    _cam(xgradcam.XGRADCAM, xgradcam.xgradcam_formula),
    Method(attention.ATTENTION_ROLLOUT, attention.attention_rollout, needs_attention=True),
    Method(attention.ATTENTION_RELEVANCE, attention.attention_relevance, needs_attention=True),
    Method(guided_gradcam.GUIDED_GRADCAM, guided_gradcam.guided_gradcam, needs_layer=True,
           passes=guided_gradcam.passes, smoothable=True),
)


def _offering_smoothable(wrapper: Method) -> Method:
    """The wrapper with its "base" parameter offering every smoothable method (for text
    models, those of them that apply to text): the one list of what SmoothGrad wraps."""
    bases = [m.spec for m in _METHODS if m.smoothable]
    base = dataclasses.replace(wrapper.spec.param("base"),
                               choices=tuple(s.name for s in bases),
                               text_choices=tuple(s.name for s in bases if s.text))
    params = tuple(base if p.name == "base" else p for p in wrapper.spec.params)
    return dataclasses.replace(wrapper, spec=dataclasses.replace(wrapper.spec, params=params))


REGISTRY: dict[str, Method] = {m.name: _offering_smoothable(m) if m.wraps else m for m in _METHODS}


def get(name: str) -> Method:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownMethodError(
            f"unknown method {name!r}; available: {', '.join(REGISTRY)}"
        ) from None


def specs() -> list[MethodSpec]:
    return [m.spec for m in REGISTRY.values()]


def with_capability(capability: str) -> list[str]:
    """Names of the methods that have ``capability`` (a Method field), in registry order."""
    return [m.name for m in REGISTRY.values() if getattr(m, capability)]


# Activation modules no ReLU rule covers: a model built with them is refused by the guided
# methods when they run (methods/guided/relu_rules.py), so the pages need not offer them.
_SMOOTH_ACTIVATIONS = ("GELU", "SiLU", "Swish", "Mish", "ELU", "Hardswish", "Softplus",
                       "Tanh", "Sigmoid")


def problem_with(name: str, module) -> str | None:
    """Why method ``name`` cannot run on ``module`` (an nn.Module), or None when it can (as far
    as the model's structure tells; the methods still check when they run): what the pages
    ask before offering a method. Attention methods need readable attention; the ReLU-rule
    methods (spec ``needs_relu``) need a model without smooth activation modules."""
    entry = get(name)
    if entry.needs_attention:
        return attention.attention_problem(module)
    if entry.spec.needs_relu:
        smooth = sorted({type(m).__name__ for m in module.modules()
                         if type(m).__name__.endswith(_SMOOTH_ACTIVATIONS)
                         or "GELU" in type(m).__name__})
        if smooth:
            return (f"{entry.spec.label} changes the backward pass of ReLU-type activations; "
                    f"this model uses {', '.join(smooth)}")
    return None


def applicable_to(module) -> list[str]:
    """The methods that can run on ``module``, in registry order."""
    return [name for name in REGISTRY if problem_with(name, module) is None]


__all__ = ["REGISTRY", "Method", "applicable_to", "get", "problem_with", "specs",
           "with_capability"]
