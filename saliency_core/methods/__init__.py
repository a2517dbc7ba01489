"""The method registry: each name maps to its spec and its compute function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UnknownMethodError
from ..specs import MethodSpec
from . import cam, gradient, guided, integrated_gradients, smoothgrad


@dataclass(frozen=True)
class Method:
    spec: MethodSpec
    compute: Callable  # (ctx, x, targets, params) -> raw attribution
    # True when every gradient is taken at the input itself, so "predicted" can be read
    # from the same pass instead of costing a separate forward.
    at_input: bool = True


REGISTRY: dict[str, Method] = {
    m.spec.name: m
    for m in (
        Method(gradient.GRADIENT, gradient.gradient),
        Method(gradient.GRADIENT_X_INPUT, gradient.gradient_x_input),
        Method(integrated_gradients.INTEGRATED_GRADIENTS, integrated_gradients.integrated_gradients, at_input=False),
        Method(smoothgrad.SMOOTHGRAD, None, at_input=False),  # composed in api
        Method(guided.GUIDED_BACKPROP, guided.guided_backprop),
        Method(guided.DECONVNET, guided.deconvnet),
        Method(cam.GRADCAM, cam.gradcam),
        Method(cam.GRADCAM_PLUS_PLUS, cam.gradcam_plus_plus),
        Method(cam.HIRESCAM, cam.hirescam),
        Method(cam.GUIDED_GRADCAM, cam.guided_gradcam),
    )
}


def get(name: str) -> Method:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownMethodError(
            f"unknown method {name!r}; available: {', '.join(REGISTRY)}"
        ) from None


def specs() -> list[MethodSpec]:
    return [m.spec for m in REGISTRY.values()]

