"""Incremental refinement: a finer Integrated Gradients or SmoothGrad estimate that reuses
every gradient evaluation of a coarser one.

- Riemann left and right grids nest when the step count is multiplied (n -> 2n keeps every
  old node); the trapezoid grid nests when its intervals are (n points -> 2n - 1 points).
  Their weights are uniform (the trapezoid's two ends at half weight, whatever n), so one
  running sum of the gradients evaluated so far is all the state a refinement needs.
- Seeded noisy copies always nest (copy s is the same whatever the count), so going from
  n to m samples evaluates only copies n .. m - 1.

Going from n to 2n therefore costs n new evaluations, half of starting over. The sums of the
last few counts are kept, so a count that was already evaluated (going back down, say from
64 to 32 after 16 -> 32 -> 64) costs no model pass, and a refinement starts from the largest
kept count whose grid it contains (50 -> 75 reuses a kept 25). Other changes
(another quadrature, baseline, sigma, or a step count whose grid does not contain the old
one) start over, so ``explain`` always returns what ``saliency_core.explain`` would.

    refiner = Refiner(model, x, "integrated_gradients", target=3, quadrature="riemann_right")
    coarse = refiner.explain(steps=32)
    fine = refiner.explain(steps=64)   # 32 new evaluations, not 64
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Unpack

import torch

from saliency_core.errors import MethodNotApplicableError
from saliency_core.harness import (
    Explanation,
    check_inputs,
    input_errors_explained,
    prepare,
    split_params,
    unwrap_model,
)
from saliency_core.methods import get as method_entry
from saliency_core.methods import with_capability
from saliency_core.methods.base import Shelf
from saliency_core.methods.integrated_gradients import NESTED_RULES, nested_counts  # noqa: F401 - used by pages
from saliency_core.params import MethodParams, Model, Target
from saliency_core.targets import Objective

# Method name -> the count parameter a Refiner refines ("steps", "samples").
REFINABLE = {name: method_entry(name).refine_count for name in with_capability("refine")}
KEPT_STATES = 8


def reusable_counts(method: str, params: dict, task: str = "image") -> list[int]:
    """The counts below the requested one (``params[REFINABLE[method]]``) whose evaluations a
    Refiner run at the requested count reuses, smallest first; empty when none nest (or the
    method is not refinable). Params are read as ``explain`` reads them."""
    entry = method_entry(method)
    if entry.refine_nested is None:
        return []
    p, _base, base_p, _options = split_params(entry, params, task)
    return entry.refine_nested(p, base_p or {}, p[entry.refine_count])


class Refiner:
    """Explanations of one input batch with one method, refinable in steps or samples.

    Raising Integrated Gradients' ``steps`` (on a nesting grid: riemann_left, riemann_right,
    riemann_trapezoid) or SmoothGrad's ``samples`` evaluates only the new points; going back
    to a count already evaluated costs no model pass. Each result is what ``explain`` returns
    for the same parameters.

    Args:
        model: As for ``explain``.
        inputs: Float tensor [N, C, H, W] in the model's input space.
        method: "integrated_gradients" or "smoothgrad" (``REFINABLE``).
        target: As for ``explain`` (resolved once, at the first call).
        task: "image" or "text"; default: the loaded model's task, else "image".
        forward: The points -> logits function to differentiate instead of the model's own:
            text is refined in embedding space with the sentence's forward (``TextRefiner``).
        make_baseline: Builds a named baseline for the points (text: the sentence's
            pad/mask/unk/zeros embeddings); default: the image baselines.
        **params: The method's parameters and engine options, as for ``explain``; each call
            can change them.

    Raises:
        MethodNotApplicableError: The method evaluates no sequence of points to refine.
        InputShapeError: Inputs that are not a float batch.

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> refiner = sc.Refiner(loaded, torch.rand(1, 3, 64, 64), "integrated_gradients",
        ...                      quadrature="riemann_right")
        >>> coarse = refiner.explain(steps=8)
        >>> fine = refiner.explain(steps=16)
        >>> fine.metadata["reused_passes"]   # the 8 nodes of the coarse grid
        8
    """

    def __init__(self, model: Model, inputs: torch.Tensor, method: str, target: Target = "predicted",
                 *, task: str | None = None,
                 forward: Callable[[torch.Tensor], Any] | None = None,
                 make_baseline: Callable[..., torch.Tensor] | None = None,
                 **params: Unpack[MethodParams]):
        if method_entry(method).refine is None:
            raise MethodNotApplicableError(
                f"refinement applies to {', '.join(REFINABLE)}; {method!r} evaluates no sequence of points"
            )
        _fn, _module, facts = unwrap_model(model)
        self.task = task or facts["task"] or "image"
        check_inputs(inputs, "input", self.task)
        self._forward = forward
        self._make_baseline = make_baseline
        self.model = model
        self.method = method
        self.inputs = inputs
        self.params = params
        self.target = target
        self._logits: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._objective: Objective | None = None
        self._shelf = Shelf(KEPT_STATES)

    def attribute(self, **changes: Unpack[MethodParams]) -> torch.Tensor:
        """Just the attribution of ``explain``.

        Args:
            **changes: Parameters that differ from the constructor's, e.g. ``steps=64``.

        Returns:
            The attribution, as ``attribute`` returns it.

        Raises:
            SaliencyError: Whatever ``explain`` raises.
        """
        return self.explain(**changes).attribution

    def explain(self, **changes: Unpack[MethodParams]) -> Explanation:
        """The explanation at the given parameters, reusing kept evaluations.

        Args:
            **changes: Parameters that differ from the constructor's, e.g. ``steps=64``.

        Returns:
            An ``Explanation``; ``metadata["reused_passes"]`` counts the points not evaluated again.

        Raises:
            ParameterError: A parameter the method does not have, or a value out of range.
            CancelledError: ``cancel`` was set.
        """
        with input_errors_explained(self.model, self.inputs, self.task):
            return self._explain({**self.params, **changes})

    def _explain(self, params: dict) -> Explanation:
        r = prepare(self.model, self.inputs, self.method, params, task=self.task,
                    forward=self._forward, make_baseline=self._make_baseline, want_logits=True)
        if self._logits is None or self._objective is None:
            self._logits = r.logits()
            self._targets = r.targets(self.target, self._logits)
            self._objective = r.ctx.objective
        r.use(self._objective)
        refine = r.entry.refine
        if refine is None:  # checked in __init__; the method cannot change between calls
            raise MethodNotApplicableError(f"{self.method!r} cannot be refined")
        if r.base is not None:
            attr, reused = refine(r.ctx, r.x, self._targets, r.p, r.base, r.base_p, self._shelf)
        else:
            attr, reused = refine(r.ctx, r.x, self._targets, r.p, self._shelf)
        attr = r.finish(attr)
        exp = r.explanation(attr, self._logits, self._targets)
        exp.metadata["reused_passes"] = reused
        return exp
