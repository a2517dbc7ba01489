"""Token saliency: attribution in embedding space for Hugging Face-style classifiers, with
tokens (and one score per token) back out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Unpack

import numpy as np
import torch

from saliency_core.api import run, unwrap_model
from saliency_core.errors import ParameterError, SaliencyError
from saliency_core.harness.refine import Refiner
from saliency_core.methods import get as method_entry
from saliency_core.methods.integrated_gradients import TEXT_BASELINES
from saliency_core.params import MethodParams, Model, Target

AGGREGATIONS = ("auto", "sum", "l2")


@dataclass
class TextAttribution:
    """Token saliency for one sentence; what ``attribute_text`` returns.

    Attributes:
        tokens: The tokenizer's tokens, special ones ([CLS], [SEP]) included.
        special: Per token, whether it is a special token.
        scores: numpy [T], one signed score per token (the embedding attribution summed or
            L2-normed over the embedding dimension, see ``aggregation``).
        attribution: [T, D], the raw attribution in embedding space.
        target: The class explained (a contrast's first class; -1 for a target function).
        predicted: The model's top class.
        probabilities: numpy [K], the softmax of the logits.
        metadata: JSON-able facts (method, params, time_s, passes, aggregation, truncated...).
        labels: The model's class names, when it has them (a ``LoadedModel``).

    In Jupyter it shows itself: the tokens highlighted (red for the class explained, blue
    against, as in the app) and the prediction (``_repr_html_``), or the scores as a bar
    chart (``_repr_png_``).

    Example:
        >>> import saliency_core as sc
        >>> loaded = sc.load_model("minilm-sentiment", device="cpu")
        >>> ta = sc.attribute_text(loaded, loaded.tokenizer, "a fine film", "gradient_x_input")
        >>> ta.tokens
        ['[CLS]', 'a', 'fine', 'film', '[SEP]']
        >>> 'class="token"' in ta._repr_html_() and ta._repr_png_()[1:4] == b"PNG"
        True
    """

    tokens: list[str]
    special: list[bool]
    scores: np.ndarray  # [T]
    attribution: torch.Tensor  # [T, D]
    target: int
    predicted: int
    probabilities: np.ndarray  # [K]
    metadata: dict = field(default_factory=dict)
    labels: Sequence[str] | None = field(default=None, repr=False, compare=False)

    def _repr_html_(self) -> str:
        from saliency_core.show.notebook import text_html

        return text_html(self)

    def _repr_png_(self) -> bytes:
        from saliency_core.show.notebook import text_png

        return text_png(self)


def _token_id(tokenizer, name: str) -> int:
    attr = {"pad": "pad_token_id", "mask": "mask_token_id", "unk": "unk_token_id"}[name]
    value = getattr(tokenizer, attr, None)
    if value is None:
        raise ParameterError(f"this tokenizer has no {name} token; choose another baseline")
    return int(value)


def text_baseline_builder(embed, ids: torch.Tensor, special: torch.Tensor):
    """A make_baseline for one tokenised sentence: special tokens ([CLS], [SEP]) stay, every
    other position becomes the chosen token's embedding (or zeros)."""

    def make(name, x, seed=0, sample=0, tokenizer=None):
        if isinstance(name, torch.Tensor):
            return torch.broadcast_to(name.to(x.device, x.dtype), x.shape).clone()
        if name not in TEXT_BASELINES:
            raise ParameterError(f"text baselines are {', '.join(TEXT_BASELINES)}; got {name!r}")
        keep = special.view(1, -1, 1).to(x.device)
        with torch.no_grad():
            original = embed(ids)
            if name == "zeros":
                replaced = torch.zeros_like(original)
            else:
                replaced = embed(torch.full_like(ids, _token_id(tokenizer, name)))
        base = torch.where(keep, original, replaced).to(x.dtype)
        return torch.broadcast_to(base, x.shape).clone()

    return make


def attribute_text(model: Model, tokenizer: Any, text: str, method: str, target: Target = "predicted", *,
                   max_length: int | None = None, aggregation: Literal["auto", "sum", "l2"] = "auto",
                   **params: Unpack[MethodParams]) -> TextAttribution:
    """One score per token of ``text`` for ``target``, by attribution in embedding space.

    Args:
        model: A Hugging Face-style sequence classifier (``get_input_embeddings()`` and
            ``inputs_embeds=``), or a text ``LoadedModel``.
        tokenizer: Its tokenizer (``loaded.tokenizer`` for a loaded model).
        text: The sentence to explain.
        method: A method whose spec has ``text=True``: gradient, gradient_x_input,
            integrated_gradients, smoothgrad.
        target: "predicted", a class index or name, a ``Contrast`` or a function of the
            logits, as for ``attribute``.
        max_length: Truncate to this many tokens (default: the tokenizer's limit, at most 512).
        aggregation: How the embedding dimension becomes one score: "sum" (signed; the
            default for input-weighted methods under "auto") or "l2".
        **params: The method's parameters (text baselines: "pad", "mask", "unk", "zeros") and
            the engine options, as for ``attribute``.

    Returns:
        A ``TextAttribution``.

    Raises:
        SaliencyError: Empty text, a model without input embeddings, or any problem
            ``attribute`` reports (ParameterError, TargetError, ...).
        MethodNotApplicableError: The method does not apply to text.

    Example:
        >>> import saliency_core as sc
        >>> loaded = sc.load_model("minilm-sentiment", device="cpu")
        >>> ta = sc.attribute_text(loaded, loaded.tokenizer, "a gripping film", "gradient")
        >>> ta.tokens[0], len(ta.scores) == len(ta.tokens)
        ('[CLS]', True)
    """
    if not isinstance(text, str) or not text.strip():
        raise SaliencyError("enter some text to explain")
    if aggregation not in AGGREGATIONS:
        raise ParameterError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
    sentence = _Sentence.of(model, tokenizer, text, max_length)
    attr, r, logits = run(model, sentence.embeds, method, target, params=dict(params), task="text",
                          forward=sentence.forward, make_baseline=sentence.make_baseline,
                          want_logits=True)
    return sentence.result(r.explanation(attr, logits), r.entry.includes_input(r.p), aggregation)


class TextRefiner:
    """``attribute_text`` with Integrated Gradients or SmoothGrad, refinable like ``Refiner``:
    raising the steps or samples evaluates only the new points, and each count's result is
    what ``attribute_text`` gives for it.

    Args:
        model: As for ``attribute_text``.
        tokenizer: Its tokenizer (``loaded.tokenizer`` for a loaded model).
        text: The sentence to explain.
        method: "integrated_gradients" or "smoothgrad".
        target: As for ``attribute_text``.
        max_length: Truncate to this many tokens, as for ``attribute_text``.
        aggregation: "auto", "sum" or "l2", as for ``attribute_text``.
        **params: The method's parameters and engine options; each ``explain`` can change them.

    Raises:
        ParameterError: An unknown aggregation.
        SaliencyError: Empty text or a model without input embeddings.
        MethodNotApplicableError: A method that cannot be refined.

    Example:
        >>> import saliency_core as sc
        >>> loaded = sc.load_model("minilm-sentiment", device="cpu")
        >>> refiner = sc.TextRefiner(loaded, loaded.tokenizer, "a fine film", "integrated_gradients",
        ...                          quadrature="riemann_right")
        >>> coarse = refiner.explain(steps=8)
        >>> fine = refiner.explain(steps=16)   # 8 new evaluations, not 16
        >>> fine.metadata["reused_passes"], fine.tokens == coarse.tokens
        (8, True)
    """

    def __init__(self, model: Model, tokenizer: Any, text: str, method: str,
                 target: Target = "predicted", *,
                 max_length: int | None = None, aggregation: Literal["auto", "sum", "l2"] = "auto",
                 **params: Unpack[MethodParams]):
        if aggregation not in AGGREGATIONS:
            raise ParameterError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
        self.sentence = _Sentence.of(model, tokenizer, text, max_length)
        self.aggregation = aggregation
        self.method = method
        self.params = params
        self._refiner = Refiner(model, self.sentence.embeds, method, target, task="text",
                                forward=self.sentence.forward,
                                make_baseline=self.sentence.make_baseline, **params)

    def explain(self, **changes: Unpack[MethodParams]) -> TextAttribution:
        """Token scores at the given parameters, reusing kept evaluations.

        Args:
            **changes: Parameters that differ from the constructor's, e.g. ``steps=64``.

        Returns:
            A ``TextAttribution``; ``metadata["reused_passes"]`` counts the points not
            evaluated again.

        Raises:
            ParameterError: A parameter the method does not have, or a value out of range.
            CancelledError: ``cancel`` was set.
        """
        exp = self._refiner.explain(**changes)
        weighted = method_entry(self.method).includes_input({**self.params, **changes})
        result = self.sentence.result(exp, weighted, self.aggregation)
        result.metadata["reused_passes"] = exp.metadata.get("reused_passes", 0)
        return result


@dataclass
class _Sentence:
    """One tokenised sentence in embedding space: what a text attribution runs on."""

    tokenizer: Any
    ids: torch.Tensor
    special: torch.Tensor
    embeds: torch.Tensor
    forward: Callable
    make_baseline: Callable
    truncated: bool
    limit: int

    @classmethod
    def of(cls, model, tokenizer, text: str, max_length: int | None) -> _Sentence:
        if not isinstance(text, str) or not text.strip():
            raise SaliencyError("enter some text to explain")
        _fn, module, _facts = unwrap_model(model)
        if module is None or not hasattr(module, "get_input_embeddings"):
            raise SaliencyError("text attribution needs a model with get_input_embeddings() that accepts inputs_embeds")
        limit = max_length or min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)
        full = tokenizer(text, return_tensors="pt", truncation=False)
        enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=limit)
        truncated = full["input_ids"].shape[1] > enc["input_ids"].shape[1]
        device = next(module.parameters()).device
        ids = enc["input_ids"].to(device)
        mask = enc.get("attention_mask", torch.ones_like(enc["input_ids"])).to(device)
        token_type = enc.get("token_type_ids")
        # [UNK] stands for a word the user wrote, so it is explained like any other token.
        special_ids = set(getattr(tokenizer, "all_special_ids", []) or []) - {getattr(tokenizer, "unk_token_id", None)}
        special = torch.tensor([int(i) in special_ids for i in ids[0].tolist()], device=device)
        embed: Callable[[torch.Tensor], torch.Tensor] = module.get_input_embeddings()  # type: ignore[operator]
        with torch.no_grad():
            embeds = embed(ids).detach()

        def forward(points):
            m = points.shape[0]
            kwargs = {"inputs_embeds": points, "attention_mask": mask.expand(m, -1)}
            if token_type is not None:
                kwargs["token_type_ids"] = token_type.to(device).expand(m, -1)
            return module(**kwargs)

        base_builder = text_baseline_builder(embed, ids, special)

        def make_baseline(name, x, seed=0, sample=0):
            return base_builder(name, x, seed, sample, tokenizer=tokenizer)

        return cls(tokenizer, ids, special, embeds, forward, make_baseline, bool(truncated), limit)

    def result(self, exp, includes_input: bool, aggregation: str) -> TextAttribution:
        a = exp.attribution[0]
        mode = aggregation
        if mode == "auto":
            # An attribution that includes the input (x · grad) sums over the embedding to a
            # signed per-token contribution; a plain gradient has no sign worth summing.
            mode = "sum" if includes_input else "l2"
        scores = a.sum(-1) if mode == "sum" else a.norm(dim=-1)
        meta = dict(exp.metadata, aggregation=mode, truncated=self.truncated,
                    max_length=self.limit, num_tokens=int(self.ids.shape[1]))
        return TextAttribution(
            tokens=self.tokenizer.convert_ids_to_tokens(self.ids[0].tolist()),
            special=self.special.tolist(),
            scores=scores.detach().cpu().numpy(),
            attribution=a.detach().cpu(),
            target=int(exp.target[0]),
            predicted=int(exp.predicted[0]),
            probabilities=exp.probabilities[0].numpy(),
            metadata=meta,
            labels=exp.labels,
        )
