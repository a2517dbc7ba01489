"""Pointing accuracy of next-word attributions where the deciding token is known: the bundled
language model's planted dependencies (saliency_core/training/patterns.py).

For every test example the prompt runs up to the planted word and that word is explained
(teacher forcing, one generated token). The method *points* at the prompt word with the
largest attribution (signed: the strongest evidence for the word; the plain gradient's scores
are norms, so its largest is the most sensitive token); special tokens such as ``<bos>`` are
never pointed at. Three rules say where it may point:

- ``all``: any prompt token;
- ``not_previous``: any but the token right before the word, which in a language model often
  dominates because it is where the prediction is read from;
- ``candidates``: only the tokens that could have decided the word (the planted source and
  its distractors: the other noun for agreement, the inner opening bracket for brackets, the
  other content words for copy), the question a distractor asks.

With ``contrast=True`` (the documented protocol, the same for every method) each word is
explained *rather than* its planted alternative: the answer the distractor would give
(``are`` rather than ``is``; ``)`` rather than ``]``) or, for copy, another name. That removes
the evidence that a verb, a closing bracket or a name comes next (shared by both answers) and
keeps the evidence for which one, the question the planted dependency answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from saliency_core.training import patterns

RULES = ("all", "not_previous", "candidates")
#: The examples the documented figures use (never training or the card's test examples).
DEFAULT_SEED = 2024


@dataclass
class PlantedPointing:
    """Pointing accuracies of one method on the planted dependencies.

    Attributes:
        method: The method's name.
        params: Its parameters.
        contrast: Whether each word was explained rather than its planted alternative.
        accuracy: ``accuracy[kind][rule]``, the fraction of examples of that kind where the
            method points at the planted source under that rule (see the module's notes).
        counts: Examples per kind.
        pointed: Per kind, the prompt token each example's attribution pointed at (rule
            ``all``), to read the misses.
        completeness_gap: For a method with a completeness check (Integrated Gradients), the
            largest |sum of attributions − (f(x) − f(baseline))| / |f(x) − f(baseline)| over
            the examples: whether its steps were enough. None for the others.
    """

    method: str
    params: dict
    contrast: bool
    accuracy: dict[str, dict[str, float]]
    counts: dict[str, int]
    pointed: dict[str, list[str]] = field(default_factory=dict)
    completeness_gap: float | None = None

    def overall(self, rule: str = "all") -> float:
        """The accuracy over every example of every kind, under ``rule``."""
        total = sum(self.counts.values())
        return sum(self.accuracy[k][rule] * n for k, n in self.counts.items()) / max(
            1, total
        )


def pointing_accuracy(
    model: Any,
    tokenizer: Any,
    method: str,
    *,
    per_kind: int = 30,
    seed: int = DEFAULT_SEED,
    kinds: Sequence[str] = patterns.KINDS,
    contrast: bool = False,
    **params: Any,
) -> PlantedPointing:
    """How often ``method`` points at the planted source token of each dependency.

    Args:
        model: A causal language model trained on the planted text (the bundled
            ``patterns-lm``), or its ``LoadedModel``.
        tokenizer: Its tokenizer (None: the loaded model's).
        method: A method of ``attribute_generation``.
        per_kind: Test examples per kind of dependency.
        seed: The examples' stream (the default is used by no training data).
        kinds: Which dependencies ("copy", "agreement", "brackets").
        contrast: Explain each word rather than its planted alternative (the distractor's
            answer; another name for copy).
        **params: The method's parameters (``steps``, ``baseline``...).

    Returns:
        A ``PlantedPointing``.

    Example:
        >>> from saliency_core.models import load_model
        >>> from saliency_core.evaluation.planted import pointing_accuracy
        >>> lm = load_model("patterns-lm", device="cpu")
        >>> result = pointing_accuracy(lm, None, "integrated_gradients", per_kind=4, steps=16)
        >>> sorted(result.accuracy)
        ['agreement', 'brackets', 'copy']
    """
    from saliency_core.text.generation import attribute_generation

    hits: dict[str, dict[str, list[bool]]] = {k: {r: [] for r in RULES} for k in kinds}
    pointed: dict[str, list[str]] = {k: [] for k in kinds}
    gaps: list[float] = []
    for kind in kinds:
        for example in patterns.generate(per_kind, seed, kind=kind):
            against = example.contrast if contrast else None
            result = attribute_generation(
                model,
                tokenizer,
                example.prompt,
                method,
                continuation=" " + example.target,
                contrast=against,
                **params,
            )
            # The prompt's words, without the special tokens the tokenizer adds (<bos>).
            words = np.flatnonzero(~result.special_mask[: result.prompt_length])
            if len(words) != example.target_position:
                raise ValueError(
                    f"the tokenizer does not split {example.prompt!r} into its "
                    "words: not the planted model's tokenizer?"
                )
            row = result.matrix[0, words]
            source = example.source_position
            allowed = {
                "all": np.arange(len(row)),
                "not_previous": np.arange(len(row) - 1),
                "candidates": np.asarray(example.candidates),
            }
            for rule, positions in allowed.items():
                hits[kind][rule].append(
                    int(positions[np.argmax(row[positions])]) == source
                )
            pointed[kind].append(example.tokens[int(np.argmax(row))])
            if "completeness" in result.metadata:
                gaps.append(abs(result.metadata["completeness"]["relative_gap"][0]))
    accuracy = {
        k: {r: round(float(np.mean(v)), 4) for r, v in rules.items()}
        for k, rules in hits.items()
    }
    gap = round(float(max(gaps)), 4) if gaps else None
    return PlantedPointing(method, dict(params), contrast, accuracy,
                           {k: per_kind for k in kinds}, pointed, gap)  # fmt: skip


@dataclass
class PlantedRandomization:
    """Adebayo et al.'s cascading model randomization on the planted prompts: how alike each
    example's attribution row stays (Spearman rank correlation of the absolute values over
    the prompt) as the model's layers are re-initialised from the logits down.

    Attributes:
        method: The method's name.
        units: The randomization units, logits first (``steps[i]`` has units[: i + 1]
            randomized).
        similarity: Per step, the mean rank correlation with the trained model's rows; a
            method that explains the model falls towards 0.
    """

    method: str
    units: list[str]
    similarity: list[float]


def randomization_check(model: Any, tokenizer: Any, method: str, *, per_kind: int = 4,
                        seed: int = DEFAULT_SEED, randomization_seed: int = 0,
                        **params: Any) -> PlantedRandomization:
    """The cascading model randomization test of ``method`` on planted prompts: the model is
    copied (never changed), its units re-initialised one by one from the logits down
    (``evaluation.randomization``), and each copy's attribution rows compared with the
    trained model's.

    Example:
        >>> from saliency_core.models import load_model
        >>> from saliency_core.evaluation.planted import randomization_check
        >>> lm = load_model("patterns-lm", device="cpu")
        >>> check = randomization_check(lm, None, "gradient_x_input", per_kind=2)
        >>> check.similarity[-1] < 0.9
        True
    """
    import torch

    from saliency_core.evaluation.randomization import (
        randomization_units,
        randomized_copy,
    )
    from saliency_core.evaluation.similarity import spearman
    from saliency_core.text.generation import attribute_generation

    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    examples = [e for kind in patterns.KINDS for e in patterns.generate(per_kind, seed, kind)]

    def rows(current) -> list[np.ndarray]:
        out = []
        for e in examples:
            result = attribute_generation(current, tokenizer, e.prompt, method,
                                          continuation=" " + e.target, **params)
            words = ~result.special_mask[: result.prompt_length]
            out.append(np.abs(result.matrix[0, : result.prompt_length][words]))
        return out

    module = getattr(model, "model", model)
    device = next(module.parameters()).device
    example = torch.tensor([tokenizer(examples[0].prompt)["input_ids"]], device=device)
    units = randomization_units(model, example)
    trained = rows(model)
    similarity = []
    for step in range(1, len(units) + 1):
        copy = randomized_copy(model, units, seed=randomization_seed, upto=step)
        other = rows(copy)
        similarity.append(round(float(np.nanmean([spearman(a, b)
                                                  for a, b in zip(trained, other)])), 4))
    return PlantedRandomization(method, [u.name for u in units], similarity)


#: The settings the documented table measures (docs/planted_lm.md).
TABLE_METHODS: list[tuple[str, dict]] = [
    ("gradient", {}),
    ("gradient_x_input", {}),
    # The bundled model was trained with words dropped to <unk>: that baseline means "absent".
    ("integrated_gradients", {"steps": 32, "baseline": "unk"}),
    ("integrated_gradients", {"steps": 32, "baseline": "pad"}),
    ("smoothgrad", {"samples": 16}),
]


def markdown_table(model: Any, tokenizer: Any = None, per_kind: int = 100,
                   seed: int = DEFAULT_SEED) -> str:
    """The pointing accuracies of ``TABLE_METHODS`` (each with the contrast, the documented
    protocol, then without) as a Markdown table: one row per method and score, one column per
    kind and rule, and Integrated Gradients' largest completeness gap."""
    head = ["method", "explains"] + [f"{k} ({r.replace('_', ' ')})"
                                     for k in patterns.KINDS for r in RULES] + ["IG gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, params in TABLE_METHODS:
        for contrast in (True, False):
            result = pointing_accuracy(model, tokenizer, method, per_kind=per_kind, seed=seed,
                                       contrast=contrast, **params)
            label = method + "".join(f", {k}={v}" for k, v in params.items())
            cells = [f"{result.accuracy[k][r]:.2f}" for k in patterns.KINDS for r in RULES]
            explains = "log p(word) − log p(alternative)" if contrast else "log p(word)"
            gap = "" if result.completeness_gap is None else f"{result.completeness_gap:.1%}"
            lines.append("| " + " | ".join([label, explains, *cells, gap]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m saliency_core.evaluation.planted [--per-kind N]``: the table on the
    bundled patterns-lm."""
    import argparse

    from saliency_core.models import load_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--per-kind", type=int, default=100, help="examples per dependency")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    print(markdown_table(load_model("patterns-lm", device=args.device), None, args.per_kind))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
