"""Grids of maps a model computes over one input, in one call: several methods
(``method_grid``) or several classes (``class_grid``), drawn by ``grid``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Unpack, overload

import numpy as np
from PIL import Image

from saliency_core.errors import InputShapeError, ParameterError
from saliency_core.render.grid import (
    GridStyle,
    Output,
    _checked_index,
    grid,
    input_image,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from saliency_core.params import Model, Target


def _label(model: Model, k: int) -> str:
    labels = getattr(model, "labels", None)
    return str(labels[k]) if labels is not None and 0 <= k < len(labels) else f"class {k}"


def _picture(model: Model, x: Any) -> np.ndarray:
    unpreprocess = getattr(model, "unpreprocess", None)
    if callable(unpreprocess):
        return np.asarray(unpreprocess(x))
    return input_image(x, 0, getattr(model, "normalization", None))


def _one_input(inputs: Any, index: int) -> Any:
    if not hasattr(inputs, "dim") or inputs.dim() != 4:
        raise InputShapeError("inputs must be a batch of images [N, C, H, W]")
    i = _checked_index(index, inputs.shape[0])
    return inputs[i:i + 1]


@overload
def method_grid(model: Model, inputs: Any, methods: Sequence[str], target: Target = ..., *,
                output: Literal["pil"] = ..., index: int = ...,
                params: Mapping[str, Mapping[str, Any]] | None = ...,
                **style: Unpack[GridStyle]) -> Image.Image: ...
@overload
def method_grid(model: Model, inputs: Any, methods: Sequence[str], target: Target = ..., *,
                output: Literal["figure"], index: int = ...,
                params: Mapping[str, Mapping[str, Any]] | None = ...,
                **style: Unpack[GridStyle]) -> Figure: ...
def method_grid(model: Model, inputs: Any, methods: Sequence[str], target: Target = "predicted", *,
                output: Output = "pil", index: int = 0,
                params: Mapping[str, Mapping[str, Any]] | None = None,
                **style: Unpack[GridStyle]) -> Image.Image | Figure:
    """Several methods on one input, explained and drawn in one call.

    Args:
        model: A ``LoadedModel`` (its labels and pixels are used) or a plain ``nn.Module``.
        inputs: Images [N, C, H, W] in the model's input space.
        methods: Method names, e.g. ``["gradient", "integrated_gradients", "gradcam"]``.
        target: "predicted", or the class to explain.
        output: "pil" or "figure".
        index: Which input of the batch.
        params: Per method, its keyword parameters, e.g. ``{"integrated_gradients": {"steps": 16}}``.
        **style: ``grid``'s drawing keywords (cmap, alpha, sign, shared_scale, columns, ...).

    Returns:
        A PIL image (or ``Figure``): the input, then one overlay per method titled with the
        method and its time; the heading names the prediction and the class explained.

    Raises:
        ParameterError: No methods, ``params`` for a method not asked for, or anything
            ``explain`` rejects (UnknownMethodError, TargetError, ...).
        InputShapeError: ``inputs`` is not a batch of images.

    Example:
        >>> import torch, saliency_core as sc
        >>> from saliency_core.render import method_grid
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> picture = method_grid(loaded, torch.rand(1, 3, 64, 64), ["gradient", "gradcam"])
        >>> picture.width > picture.height
        True
    """
    from saliency_core.api import explain

    if not methods:
        raise ParameterError("give at least one method")
    extra = sorted(set(params or {}) - set(methods))
    if extra:
        raise ParameterError(f"params given for {', '.join(extra)}, which is not among the methods")
    x = _one_input(inputs, index)
    maps: dict[str, Any] = {}
    heading = None
    for method in methods:
        e = explain(model, x, method, target, **dict((params or {}).get(method, {})))
        maps[f"{method} · {e.metadata['time_s']:.2f} s"] = e.attribution
        if heading is None:
            predicted, explained = int(e.predicted[0]), int(e.target[0])
            heading = (f"predicted: {_label(model, predicted)} ({float(e.probabilities[0, predicted]):.0%})"
                       f" · explained: {_label(model, explained)}")
    return grid(_picture(model, x), maps, output=output, heading=heading, **style)


@overload
def class_grid(model: Model, inputs: Any, targets: Sequence[int] | None = ..., *,
               method: str = ..., top_k: int = ..., output: Literal["pil"] = ..., index: int = ...,
               params: Mapping[str, Any] | None = ..., **style: Unpack[GridStyle]) -> Image.Image: ...
@overload
def class_grid(model: Model, inputs: Any, targets: Sequence[int] | None = ..., *,
               method: str = ..., top_k: int = ..., output: Literal["figure"], index: int = ...,
               params: Mapping[str, Any] | None = ..., **style: Unpack[GridStyle]) -> Figure: ...
def class_grid(model: Model, inputs: Any, targets: Sequence[int] | None = None, *,
               method: str = "gradcam", top_k: int = 3, output: Output = "pil", index: int = 0,
               params: Mapping[str, Any] | None = None,
               **style: Unpack[GridStyle]) -> Image.Image | Figure:
    """One method's maps of several classes of one input: what each class is seen in.

    Methods that are a function of one gradient (the CAM family, gradient,
    gradient_x_input) get every class from one forward and one batched backward
    (``attribute_targets``); any other method is run once per class.

    Args:
        model: A ``LoadedModel`` or a plain ``nn.Module``.
        inputs: Images [N, C, H, W] in the model's input space.
        targets: The classes, or None for the ``top_k`` most probable.
        method: A method name.
        top_k: How many classes when ``targets`` is None.
        output: "pil" or "figure".
        index: Which input of the batch.
        params: The method's keyword parameters.
        **style: ``grid``'s drawing keywords.

    Returns:
        A PIL image (or ``Figure``): the input, then one overlay per class titled with its
        label and probability.

    Raises:
        ParameterError: ``top_k`` out of range, or a parameter the method rejects.
        TargetError: A class the model does not have.
        InputShapeError: ``inputs`` is not a batch of images.

    Example:
        >>> import torch, saliency_core as sc
        >>> from saliency_core.render import class_grid
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> class_grid(loaded, torch.rand(1, 3, 64, 64), top_k=2, output="figure").axes[0].get_title()
        'input'
    """
    from saliency_core.api import explain
    from saliency_core.harness.multi_target import SEVERAL_TARGETS, attribute_targets

    x = _one_input(inputs, index)
    kwargs = dict(params or {})
    maps: dict[str, Any] = {}
    if method in SEVERAL_TARGETS:
        r = attribute_targets(model, x, None if targets is None else list(targets), method,
                              top_k=top_k if targets is None else None, **kwargs)
        for k, cls in enumerate(r.targets.tolist()):
            maps[f"{_label(model, cls)} · {float(r.probabilities[cls]):.0%}"] = r.attribution[k:k + 1]
    else:
        first = explain(model, x, method, "predicted" if targets is None else int(targets[0]), **kwargs)
        probabilities = first.probabilities[0]
        if targets is None:
            if not isinstance(top_k, int) or not 1 <= top_k <= probabilities.numel():
                raise ParameterError(f"top_k must be an integer in [1, {probabilities.numel()}], got {top_k!r}")
            classes = probabilities.topk(top_k).indices.tolist()
        else:
            classes = [int(t) for t in targets]
        for cls in classes:
            e = first if cls == int(first.target[0]) else explain(model, x, method, cls, **kwargs)
            maps[f"{_label(model, cls)} · {float(probabilities[cls]):.0%}"] = e.attribution
    heading = f"{method}, {len(maps)} classes"
    return grid(_picture(model, x), maps, output=output, heading=heading, **style)
