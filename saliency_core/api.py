"""The public entry points attribute and explain: one computation through the run harness."""

from __future__ import annotations

from typing import Literal, overload

import torch

from .harness import (  # noqa: F401 - the names other modules and users import from here
    ENGINE_OPTIONS,
    Explanation,
    Run,
    check_inputs,
    input_errors_explained,
    prepare,
    resolve_targets,
    unwrap_model,
)


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
        if (want_logits and not capture) or (not r.entry.at_input and isinstance(target, str)):
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


def attribute(model, inputs: torch.Tensor, method: str, target="predicted", **params) -> torch.Tensor:
    """Raw, signed, unnormalised attribution (see docs/CONTRACTS.md)."""
    attr, _run, _logits = run(model, inputs, method, target, params=params)
    return attr


def explain(model, inputs: torch.Tensor, method: str, target="predicted", **params) -> Explanation:
    """Attribution plus what was explained: prediction, probabilities and metadata."""
    attr, r, logits = run(model, inputs, method, target, params=params, want_logits=True)
    return r.explanation(attr, logits)
