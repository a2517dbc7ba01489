"""Token saliency: attribution in embedding space for Hugging Face-style classifiers, with
tokens (and one score per token) back out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .api import run, unwrap_model
from .errors import ParameterError, SaliencyError
from .methods.integrated_gradients import TEXT_BASELINES

AGGREGATIONS = ("auto", "sum", "l2")


@dataclass
class TextAttribution:
    tokens: list[str]
    special: list[bool]
    scores: np.ndarray  # [T]
    attribution: torch.Tensor  # [T, D]
    target: int
    predicted: int
    probabilities: np.ndarray  # [K]
    metadata: dict = field(default_factory=dict)


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


def attribute_text(model, tokenizer, text: str, method: str, target="predicted", *,
                   max_length: int | None = None, aggregation: str = "auto", **params) -> TextAttribution:
    if not isinstance(text, str) or not text.strip():
        raise SaliencyError("enter some text to explain")
    if aggregation not in AGGREGATIONS:
        raise ParameterError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
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
    embed = module.get_input_embeddings()
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

    attr, r, logits = run(model, embeds, method, target, params=params, task="text",
                          forward=forward, make_baseline=make_baseline, want_logits=True)
    exp = r.explanation(attr, logits)
    a = exp.attribution[0]
    mode = aggregation
    if mode == "auto":
        # An attribution that includes the input (x · grad) sums over the embedding to a
        # signed per-token contribution; a plain gradient has no sign worth summing.
        mode = "sum" if r.entry.includes_input(r.p) else "l2"
    scores = a.sum(-1) if mode == "sum" else a.norm(dim=-1)
    meta = dict(exp.metadata, aggregation=mode, truncated=bool(truncated), max_length=limit,
                num_tokens=int(ids.shape[1]))
    return TextAttribution(
        tokens=tokenizer.convert_ids_to_tokens(ids[0].tolist()),
        special=special.tolist(),
        scores=scores.detach().cpu().numpy(),
        attribution=a.detach().cpu(),
        target=int(exp.target[0]),
        predicted=int(exp.predicted[0]),
        probabilities=exp.probabilities[0].numpy(),
        metadata=meta,
    )
