"""The public entry points attribute and explain: one computation through the run harness."""

from __future__ import annotations

from typing import Literal, Unpack, overload

import torch

# Explanation and unwrap_model stay importable from here: the package, the wire format, text
# and evaluation take them from api.
from saliency_core.harness import (  # noqa: F401
    Explanation,
    Run,
    input_errors_explained,
    prepare,
    unwrap_model,
)
from saliency_core.params import MethodParams, Model, Target
from saliency_core.targets import needs_logits


@overload
def run(model, inputs: torch.Tensor, method: str, target=..., *, params: dict,
        task: str | None = ..., forward=..., make_baseline=...,
        want_logits: Literal[True]) -> tuple[torch.Tensor, Run, torch.Tensor]: ...
@overload
def run(model, inputs: torch.Tensor, method: str, target=..., *, params: dict,
        task: str | None = ..., forward=..., make_baseline=...,
        want_logits: bool = ...) -> tuple[torch.Tensor, Run, torch.Tensor | None]: ...
def run(model, inputs: torch.Tensor, method: str, target="predicted", *, params: dict,
        task: str | None = None, forward=None, make_baseline=None,
        want_logits: bool = False) -> tuple[torch.Tensor, Run, torch.Tensor | None]:
    """Shared body of attribute/explain/attribute_text: (attribution, run, logits); the logits
    at the inputs are always there with ``want_logits``."""
    with input_errors_explained(model, inputs, task):
        r = prepare(model, inputs, method, params, task=task, forward=forward,
                    make_baseline=make_baseline, want_logits=want_logits)
        capture = r.ctx.capture_logits
        logits = None
        if (want_logits and not capture) or (not r.entry.at_input and needs_logits(target)):
            logits = r.logits()
        targets = r.targets(target, logits)
        attr = r.compute(targets)
        if capture:
            logits = r.ctx.input_logits()
            if logits is None:  # a method path that did not report them
                logits = r.logits()
        if targets is not None:  # inner passes (e.g. noisy copies) may have recorded their own
            r.ctx.meta["targets"] = targets
        return r.finish(attr), r, logits


def attribute(model: Model, inputs: torch.Tensor, method: str, target: Target = "predicted",
              **params: Unpack[MethodParams]) -> torch.Tensor:
    """The raw, signed, unnormalised attribution of ``inputs`` for ``target``.

    Args:
        model: An ``nn.Module`` (a callable returning logits works for input-space methods)
            or a ``LoadedModel`` from ``load_model`` (its normalization and default CAM layer
            are used). It is used in evaluation mode and left exactly as it came.
        inputs: Float tensor [N, C, H, W] in the model's input space, on any device.
        method: A method name (``methods()``), e.g. "integrated_gradients" or "gradcam".
        target: What to explain (``saliency_core.targets``): "predicted" (each input's top
            class), a class index or a class name (a ``LoadedModel``'s labels), N of them,
            ``Contrast("cat", rather_than="dog")`` (logit_cat − logit_dog), or a function of
            the logits, ``logits [N, K] -> scores [N]``.
        **params: The method's parameters (``get_method(method).params``; typed per method
            in ``saliency_core.params``), e.g. ``steps=64`` or ``layer="layer4"``, and the
            engine options ``batch_size``, ``progress``, ``cancel``, ``memory_budget``;
            ``normalization=(mean, std)`` for a plain module with normalised inputs.

    Returns:
        The inputs' shape [N, C, H, W] for input-space methods, [N, H, W] for CAM methods
        (upsampled to the input unless ``upsample=False``), on the inputs' device.

    Raises:
        UnknownMethodError: No method has this name.
        ParameterError: A parameter the method does not have, or a value out of range.
        InputShapeError: Inputs that are not a float batch [N, C, H, W] the model takes
            (channels-last or one-channel images say so).
        TargetError: A class the model does not have (an unknown name says which are close),
            a name for a model without labels, the wrong number of targets, or a target
            function that does not return one score per row.
        LayerError: A ``layer`` the model does not have or that has no spatial output.
        MethodNotApplicableError: The method cannot run on this model (e.g. Guided Backprop
            on a GELU network).
        CancelledError: ``cancel`` was set.

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> x = torch.rand(2, 3, 64, 64)
        >>> sc.attribute(loaded, x, "integrated_gradients", steps=16).shape
        torch.Size([2, 3, 64, 64])
        >>> sc.attribute(loaded, x, "gradcam", target=[0, 3]).shape
        torch.Size([2, 64, 64])
    """
    attr, _run, _logits = run(model, inputs, method, target, params=dict(params))
    return attr


def explain(model: Model, inputs: torch.Tensor, method: str, target: Target = "predicted",
            **params: Unpack[MethodParams]) -> Explanation:
    """The attribution with what it explains: prediction, probabilities and metadata.

    Costs no forward pass beyond the attribution's own for methods that differentiate at the
    input; the others run one more.

    Args:
        model: As for ``attribute``.
        inputs: As for ``attribute``.
        method: A method name (``methods()``).
        target: As for ``attribute``.
        **params: As for ``attribute``.

    Returns:
        An ``Explanation`` (attribution, target, score, predicted, probabilities, metadata;
        the score is the one differentiated, e.g. a contrast's difference, and Integrated
        Gradients' completeness check uses it too; ``metadata["target_value"]`` is the target
        as given, in JSON-able form). In Jupyter it
        shows the inputs, the overlays and the prediction.

    Raises:
        SaliencyError: Everything ``attribute`` raises (UnknownMethodError, ParameterError,
            InputShapeError, TargetError, LayerError, MethodNotApplicableError,
            CancelledError).

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> e = sc.explain(loaded, torch.rand(1, 3, 64, 64), "integrated_gradients", steps=32)
        >>> e.probabilities.shape, max(map(abs, e.metadata["completeness_delta"])) < 0.1
        (torch.Size([1, 6]), True)
    """
    attr, r, logits = run(model, inputs, method, target, params=dict(params), want_logits=True)
    return r.explanation(attr, logits)
