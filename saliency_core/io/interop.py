"""Attributions from anywhere, read as plain arrays, so maps computed by Captum,
pytorch-grad-cam or your own code can be drawn (``saliency_core.render``) and scored
(``saliency_core.evaluation``) beside this library's own.

What is accepted: a torch tensor on any device, with or without an autograd graph, of any
float dtype; a NumPy array (pytorch-grad-cam returns float32 [N, H, W]); anything NumPy
reads; and a one-element tuple or list of those, which is what Captum returns when its
inputs were a tuple. The layouts are the ones those libraries use: [N, C, H, W] for
input-space methods, [N, H, W] for CAM maps.

Torch is imported only by ``as_tensor``, so the rendering code can use ``as_array`` without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from saliency_core.errors import InputShapeError

if TYPE_CHECKING:
    import torch


def _single(attribution: Any) -> Any:
    if isinstance(attribution, (tuple, list)) and attribution and hasattr(attribution[0], "shape"):
        if len(attribution) != 1:
            raise InputShapeError(
                f"got {len(attribution)} attributions (Captum returns one per input tensor); "
                "pass the one for the image"
            )
        return attribution[0]
    return attribution


def as_array(attribution: Any) -> np.ndarray:
    """An attribution as a float64 NumPy array on the CPU (a copy when it was a tensor).

    Args:
        attribution: A tensor, an array, or a one-element tuple of either (see above).

    Returns:
        float64 array of the same shape.

    Raises:
        InputShapeError: A tuple of several attributions, or something that is not numbers.

    Example:
        >>> import torch
        >>> as_array((torch.ones(1, 3, 2, 2, requires_grad=True),)).dtype
        dtype('float64')
    """
    a = _single(attribution)
    if hasattr(a, "detach"):  # a torch tensor, without importing torch here
        a = a.detach().double().cpu().numpy()
    try:
        out = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputShapeError(
            f"an attribution must be a tensor or an array of numbers; got {type(a).__name__}"
        ) from None
    return out


def as_tensor(attribution: Any) -> torch.Tensor:
    """An attribution as a float32 CPU tensor without a graph.

    Args:
        attribution: A tensor, an array, or a one-element tuple of either (see above).

    Returns:
        float32 tensor of the same shape, detached, on the CPU.

    Raises:
        InputShapeError: As for ``as_array``.

    Example:
        >>> import numpy as np
        >>> as_tensor(np.zeros((2, 8, 8), np.float32)).shape
        torch.Size([2, 8, 8])
    """
    import torch

    a = _single(attribution)
    if isinstance(a, torch.Tensor):
        return a.detach().float().cpu()
    return torch.from_numpy(as_array(a).astype(np.float32))
