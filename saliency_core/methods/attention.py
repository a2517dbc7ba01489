"""Attribution read from a vision transformer's attention probabilities.

- ``attention_rollout`` (Abnar & Zuidema 2020): each layer's attention averaged over heads,
  plus the identity for the residual path, rows renormalised; the layers multiplied in order;
  the class token's row over the patches is the map. It looks at no gradient, so it is the
  same for every class.
- ``attention_relevance`` (Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability"):
  R = I, then for each layer R += mean over heads of (dscore/dA ⊙ A)⁺ @ R; the class token's
  row over the patches is the map. The gradient makes it class-specific.

Both need the attention probabilities themselves. Hugging Face models give them with eager
attention, timm's ``Attention`` when its fused kernel is off (its ``attn_drop`` sees them) and
``nn.MultiheadAttention`` (torchvision's ViT) when asked for its weights. A model set up
otherwise is switched for the call, under its lock, and restored in ``finally``; windowed
attention (Swin) or a model without attention gets MethodNotApplicableError saying why.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from saliency_core.engine.geometry import grid_shape
from saliency_core.engine.layers import model_geometry
from saliency_core.engine.model_state import remembered
from saliency_core.engine.stream import logits_of, model_lock
from saliency_core.errors import MethodNotApplicableError, SaliencyError
from saliency_core.methods.base import Context
from saliency_core.methods.cam import joined, run_layer_step, upsample
from saliency_core.methods.specs import MethodSpec, Param

ATTENTION_PARAMS = (
    Param("upsample", "bool", True, "Bilinear upsampling to the input size; off keeps the "
          "patch grid.", label="Upsample", advanced=True),
)  # fmt: skip

ATTENTION_ROLLOUT = MethodSpec(
    name="attention_rollout", label="Attention rollout", family="cam",
    description="How much the class token draws from each patch through every layer's "
    "attention (heads averaged, residual added, layers multiplied). Class-agnostic: the same "
    "map for every target.",
    params=ATTENTION_PARAMS, reference="Abnar & Zuidema 2020", params_type="AttentionParams",
    # Why its map can be flat, for the pages' notice on a nearly uniform map.
    extra={"flat_map": "Attention rollout multiplies the layers' attention: when the model "
           "attends about evenly (often on an input it is unsure of), every patch gets the "
           "same share. Attention relevance and Grad-CAM weigh what the class's gradient "
           "reaches."},
)  # fmt: skip
ATTENTION_RELEVANCE = MethodSpec(
    name="attention_relevance", label="Attention relevance", family="cam",
    description="Attention weighted by its gradient for the target class (positive part, "
    "heads averaged), accumulated over the layers: class-specific, for vision transformers.",
    params=ATTENTION_PARAMS, reference="Chefer, Gur & Wolf 2021",
    params_type="AttentionParams",
)  # fmt: skip


NO_CLASS_TOKEN = (
    "this model has no class token to read the map from (it pools its patches, as Swin, LeViT "  # nosec B105 - a message, not a password
    "and PVT do): attention rollout and relevance read the class token's row; use Grad-CAM"
)

# ----------------------------------------------------------------------------- reading attention


class _Tap:
    """Where one family's attention probabilities are read, and how it is switched to a
    path that computes them for the duration of a call."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.kind = _attention_kind(model)

    @contextmanager
    def reading(self, found: list):
        """Hooks that append each layer's [N, heads, T, T] probabilities to ``found``."""
        with ExitStack() as stack:
            if self.kind == "hugging face":
                stack.enter_context(_eager_hugging_face(self.model))
                hooks = [
                    m.register_forward_hook(_second_output(found))
                    for m in _hf_attention_modules(self.model)
                ]
            elif self.kind == "timm":
                stack.enter_context(_unfused_timm(self.model))
                drops = [
                    m.get_submodule("attn_drop")
                    for m in _timm_attention_modules(self.model)
                ]
                hooks = [d.register_forward_hook(_whole_output(found)) for d in drops]
            else:
                hooks = []
                for m in self.model.modules():
                    if isinstance(m, nn.MultiheadAttention):
                        hooks.append(
                            m.register_forward_pre_hook(_ask_weights, with_kwargs=True)
                        )
                        hooks.append(m.register_forward_hook(_second_output(found)))
            try:
                yield found
            finally:
                for h in hooks:
                    h.remove()

    @property
    def has_gradients(self) -> bool:
        # nn.MultiheadAttention returns a reshaped copy of the weights made after they were
        # used, so no gradient reaches it.
        return self.kind in ("hugging face", "timm")


def _attention_kind(model: nn.Module) -> str | None:
    family = model_geometry(model).family
    if family == "hugging face" and _hf_attention_modules(model):
        return "hugging face"
    if family == "timm" and _timm_attention_modules(model):
        return "timm"
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        return "multihead"
    return None


def _hf_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that return (output, attention probabilities): a block's attention."""
    found = []
    for name, module in model.named_modules():
        cls = type(module).__name__
        if cls.endswith("Attention") and not cls.endswith("SelfAttention") and name:
            found.append(module)
    return found


def _timm_attention_modules(model: nn.Module) -> list[nn.Module]:
    return [
        m
        for m in model.modules()
        if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")
    ]


@contextmanager
def _eager_hugging_face(model):
    before = getattr(model.config, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(before)


@contextmanager
def _unfused_timm(model):
    modules = _timm_attention_modules(model)
    before = [m.fused_attn for m in modules]
    for m in modules:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, fused in zip(modules, before, strict=True):
            m.fused_attn = fused


def _ask_weights(_module, args, kwargs):
    return args, {**kwargs, "need_weights": True, "average_attn_weights": False}


def _second_output(found):
    def hook(_module, _inp, out):
        weights = out[1] if isinstance(out, tuple) and len(out) > 1 else None
        # A model whose attention module nests another returns the same tensor twice.
        if isinstance(weights, torch.Tensor) and not any(w is weights for w in found):
            found.append(weights)

    return hook


def _whole_output(found):
    def hook(_module, _inp, out):
        found.append(out)

    return hook


def tap_of(model: nn.Module | None) -> _Tap:
    """The model's attention tap; MethodNotApplicableError when it has no attention to read."""
    if model is None:
        raise SaliencyError(
            "attention methods need an nn.Module to read the attention of"
        )
    tap = remembered(model, "attention_tap", None, lambda: _Tap(model))
    if tap.kind is None:
        raise MethodNotApplicableError(
            "this model has no attention layers whose probabilities can be read (Hugging Face "
            "ViT-style models, timm vision transformers, nn.MultiheadAttention); attention "
            "rollout and relevance are for vision transformers: use Grad-CAM instead"
        )
    return tap


def attention_problem(model: nn.Module) -> str | None:
    """Why the attention methods cannot run on ``model`` (None when they can): what the app
    says before offering them."""
    try:
        tap_of(model)
    except SaliencyError as exc:
        return str(exc)
    if not model_geometry(model).prefix_tokens:
        return NO_CLASS_TOKEN
    return None


def _checked(probs: list, n: int) -> list[torch.Tensor]:
    if not probs:
        raise MethodNotApplicableError(
            "no attention probabilities were produced in the forward pass (a fused or "
            "memory-efficient attention that could not be switched off); load the model with "
            "eager attention"
        )
    tokens = probs[0].shape[-1]
    for a in probs:
        if (
            a.dim() != 4
            or a.shape[0] != n
            or a.shape[-1] != tokens
            or a.shape[-2] != tokens
        ):
            raise MethodNotApplicableError(
                "this model's attention is computed in windows or over tokens that change "
                f"between layers (got {tuple(a.shape)} for {n} inputs); rollout and relevance "
                "need every layer's attention over the same tokens (ViT, DeiT, BEiT, DINOv2): "
                "use Grad-CAM for this model"
            )
    return probs


# ----------------------------------------------------------------------------- the two formulas


def rollout_formula(probs: list[torch.Tensor]) -> torch.Tensor:
    """[N, T, T] rollout of the layers' attention [N, heads, T, T] (Abnar & Zuidema)."""
    eye = torch.eye(probs[0].shape[-1], device=probs[0].device, dtype=probs[0].dtype)
    joint = None
    for a in probs:
        a_hat = a.mean(dim=1) + eye
        a_hat = a_hat / a_hat.sum(dim=-1, keepdim=True)
        joint = a_hat if joint is None else a_hat @ joint
    assert joint is not None
    return joint


def relevance_formula(
    probs: list[torch.Tensor], grads: list[torch.Tensor]
) -> torch.Tensor:
    """[N, T, T] relevance (Chefer, Gur & Wolf): R = I; R += mean_h((∇A ⊙ A)⁺) @ R per layer."""
    n, tokens = probs[0].shape[0], probs[0].shape[-1]
    eye = torch.eye(tokens, device=probs[0].device, dtype=probs[0].dtype)
    relevance = eye.expand(n, tokens, tokens).clone()
    for a, g in zip(probs, grads, strict=True):
        cam = (g * a).clamp(min=0).mean(dim=1)
        relevance = relevance + cam @ relevance
    return relevance


def class_row_map(ctx: Context, joint: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The class token's row over the patch tokens, as an [N, rows, cols] grid."""
    geometry = model_geometry(ctx.module) if ctx.module is not None else None
    prefix = geometry.prefix_tokens if geometry is not None else None
    if not prefix:
        raise MethodNotApplicableError(NO_CLASS_TOKEN)
    patches = joint[:, 0, prefix:]
    grid = grid_shape(patches.shape[1], tuple(x.shape[-2:]))
    if grid is None:
        raise MethodNotApplicableError(
            f"cannot lay {patches.shape[1]} patch tokens over a {x.shape[-2]}x{x.shape[-1]} input"
        )
    return patches.reshape(-1, *grid)


# ----------------------------------------------------------------------------- the methods


def _run(ctx: Context, x, targets, params, with_gradients: bool):
    if x.dim() != 4:
        raise SaliencyError("attention methods need image inputs [N, C, H, W]")
    tap = tap_of(ctx.module)
    if not model_geometry(tap.model).prefix_tokens:
        raise MethodNotApplicableError(NO_CLASS_TOKEN)
    if with_gradients and not tap.has_gradients:
        raise MethodNotApplicableError(
            "this model's attention (nn.MultiheadAttention, as in torchvision's ViT) hands out "
            "a copy of its weights that no gradient reaches, so attention relevance cannot be "
            "computed; attention rollout and Grad-CAM work on it"
        )
    maps, resolved = [], []

    def take(_stream, xc, tc):
        with model_lock(ctx.module), tap.reading([]) as probs:
            if with_gradients:
                with torch.enable_grad():
                    logits = logits_of(ctx.forward(xc.detach().requires_grad_(True)))
                    probs = _checked(probs, xc.shape[0])
                    scores, t = ctx.score(logits, tc)
                    grads = torch.autograd.grad(scores.sum(), probs)
                joint = relevance_formula(
                    [a.detach() for a in probs], [g.detach() for g in grads]
                )
            else:
                with torch.no_grad():
                    logits = logits_of(ctx.forward(xc))
                    probs = _checked(probs, xc.shape[0])
                    _, t = ctx.score(logits, tc)
                joint = rollout_formula([a.detach() for a in probs])
        return logits.detach(), (class_row_map(ctx, joint, xc), t)

    def consume(_start, _stop, m, t):
        maps.append(m)
        resolved.append(t)

    run_layer_step(ctx, x, targets, take, consume)
    ctx.meta["targets"] = joined(resolved)
    grid = joined(maps)
    return upsample(grid, x.shape[-2:]) if params["upsample"] else grid


def attention_rollout(ctx: Context, x, targets, params):
    return _run(ctx, x, targets, params, with_gradients=False)


def attention_relevance(ctx: Context, x, targets, params):
    return _run(ctx, x, targets, params, with_gradients=True)


__all__ = [
    "ATTENTION_RELEVANCE",
    "ATTENTION_ROLLOUT",
    "attention_problem",
    "attention_relevance",
    "attention_rollout",
    "relevance_formula",
    "rollout_formula",
]
