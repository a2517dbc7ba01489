"""What ``explain`` returns: the attribution with what was explained, and how it shows itself
in a notebook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

# Fields for display only: the wire (saliency_core/serve/wire.py) does not send them.
_DISPLAY = {"display_only": True}


@dataclass
class Explanation:
    """An attribution and what it explains; what ``explain`` (and ``Refiner.explain``) return.

    Attributes:
        attribution: The raw signed attribution: the inputs' shape [N, C, H, W] for
            input-space methods, [N, H, W] for CAM methods.
        target: LongTensor [N], the classes explained.
        score: [N], the model's output (logit) for the target at the input.
        predicted: LongTensor [N], each input's top class.
        probabilities: [N, K], the softmax of the logits.
        metadata: JSON-able facts: method, params, seed, time_s, passes, device, target; for
            Integrated Gradients f_x, f_baseline, sum_attribution and completeness_delta as
            per-sample lists.
        inputs: The inputs as given (kept for display only; None when not known, e.g. after
            crossing a process boundary).
        labels: The model's class names, when it has them (a ``LoadedModel``).
        normalization: (mean, std) the inputs were normalised with, to show their pixels.

    In Jupyter an Explanation shows itself (``_repr_html_`` and ``_repr_png_``): per input
    (the first four) the picture, the overlay and the top classes with the one explained.

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> e = sc.explain(loaded, torch.rand(2, 3, 64, 64), "gradcam")
        >>> e.attribution.shape, e.target.shape, e.metadata["method"]
        (torch.Size([2, 64, 64]), torch.Size([2]), 'gradcam')
        >>> "<img" in e._repr_html_() and e._repr_png_()[1:4] == b"PNG"
        True
    """

    attribution: torch.Tensor
    target: torch.Tensor  # [N] classes explained
    score: torch.Tensor  # [N] model output (logit) for the target at the input
    predicted: torch.Tensor  # [N]
    probabilities: torch.Tensor  # [N, K] softmax of the logits
    metadata: dict = field(default_factory=dict)
    # For display only: kept by reference (no copy), and left out of repr and comparisons.
    inputs: torch.Tensor | None = field(default=None, repr=False, compare=False, metadata=_DISPLAY)
    labels: Sequence[str] | None = field(default=None, repr=False, compare=False, metadata=_DISPLAY)
    normalization: tuple | None = field(default=None, repr=False, compare=False, metadata=_DISPLAY)

    def _repr_html_(self) -> str:
        from saliency_core.show.notebook import explanation_html

        return explanation_html(self)

    def _repr_png_(self) -> bytes:
        from saliency_core.show.notebook import explanation_png

        return explanation_png(self)
