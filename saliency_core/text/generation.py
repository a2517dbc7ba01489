"""Next-token attribution for causal language models: which earlier tokens made the model
predict each generated token.

The sequence (prompt, then the generated or given continuation) is explained in embedding
space. Every generated token g is a target: its score (log-probability by default) is read
off the logits at the position before it, so one forward pass over the whole sequence scores
all G targets at once. Each method point (the input itself, an Integrated Gradients path
node, a SmoothGrad noisy copy) therefore costs one forward pass shared by every target and G
backward passes, which run together as one batched (vmapped) backward:

- the output layer's input ``h`` is swapped for a leaf for the pass, so one ordinary
  backward through the output layer and the score gives every target's gradient at its own
  row of ``h`` (the output layer works row by row);
- those rows seed one backward per target from ``h`` to the embeddings, batched with
  ``is_grads_batched``; the dense [G, G, V] gradient of the logits is never built.

The points go through the engine's stream (chunk size from the memory budget, out-of-memory
retry with smaller chunks, Stop and progress), as for every other method.

Integrated Gradients moves the prompt's tokens from the baseline to their embeddings while
the generated tokens stay as generated, as Captum's LLMGradientAttribution does; so its
generated-token columns are zero and its prompt columns agree with Captum's.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Unpack

import numpy as np
import torch
from torch import nn

from saliency_core.engine.stream import (
    GradientStream,
    Options,
    Stats,
    Step,
    is_out_of_memory,
    module_device,
)
from saliency_core.engine.stream import model_lock as _model_lock
from saliency_core.errors import (
    InputShapeError,
    MethodNotApplicableError,
    ParameterError,
    SaliencyError,
    TargetError,
)
from saliency_core.harness import split_params, unwrap_model
from saliency_core.methods import REGISTRY
from saliency_core.methods import get as method_entry
from saliency_core.methods.integrated_gradients import quadrature_rule
from saliency_core.methods.noise import NoiseSource
from saliency_core.methods.smoothgrad import combine_samples
from saliency_core.params import MethodParams
from saliency_core.targets import NextToken, TokenObjective, resolve_next_token

#: The methods that explain generated tokens: those whose spec applies to text (gradient,
#: gradient x input, Integrated Gradients, and SmoothGrad around one of them). What each does
#: is read from its capabilities (multiplies by the input, integrates a path, wraps another).
GENERATION_METHODS = tuple(name for name, m in REGISTRY.items() if m.spec.text)
#: Integrated Gradients' baselines for a language model, in embedding space.
GENERATION_BASELINES = ("pad", "unk", "zeros")

MAX_PROMPT_ENV = "SALIENCY_MAX_PROMPT_TOKENS"
MAX_NEW_TOKENS_ENV = "SALIENCY_MAX_NEW_TOKENS"
DEFAULT_MAX_PROMPT_TOKENS = 1024
DEFAULT_MAX_NEW_TOKENS = 256
TOP_ALTERNATIVES = 5


@dataclass
class GenerationAttribution:
    """Which source tokens each generated token depended on; what ``attribute_generation``
    returns.

    Attributes:
        source_tokens: The prompt as the tokenizer encodes it by default (as Captum's
            TextTokenInput), then the generated tokens, each as the text it stands for.
        generated_tokens: The generated (or given) tokens, as text.
        source_ids: Token ids of ``source_tokens``.
        generated_ids: Token ids of ``generated_tokens``.
        matrix: float32 [G, S]: entry [g, s] is the attribution of source token s to
            generated token g, the embedding dimension summed (input-weighted methods) or
            L2-normed (the plain gradient), see ``metadata["aggregation"]``. Zero where s is
            at or after g's own position: a token depends only on what came before it.
        probabilities: [G], the model's probability of each generated token.
        target: The score explained, JSON-able: ``{"score": "log_prob", "rather_than": ...}``.
        method: The method's name.
        params: The method's parameters, JSON-able.
        special_mask: bool [S], special and chat-template tokens: shown, marked, and left out
            of ``normalized``.
        prompt_length: How many of ``source_tokens`` are the prompt.
        metadata: JSON-able facts (time_s, passes, chunk_size, backward_batched, aggregation;
            for Integrated Gradients ``completeness``: per generated token the attributions'
            sum against f(x) - f(baseline), and the relative gap).
        top_alternatives: Per generated position, the model's five likeliest tokens with
            their probabilities (candidates for a contrast).

    Example:
        >>> import saliency_core as sc
        >>> from saliency_core.text.generation import tiny_language_model
        >>> model, tokenizer = tiny_language_model()
        >>> ga = sc.attribute_generation(model, tokenizer, "the cat sat", "gradient_x_input",
        ...                              max_new_tokens=3)
        >>> ga.matrix.shape == (3, len(ga.source_tokens)), ga.prompt_length
        (True, 3)
    """

    source_tokens: list[str]
    generated_tokens: list[str]
    source_ids: list[int]
    generated_ids: list[int]
    matrix: np.ndarray  # [G, S]
    probabilities: np.ndarray  # [G]
    target: Any
    method: str
    params: dict
    special_mask: np.ndarray  # bool [S]
    prompt_length: int
    metadata: dict = field(default_factory=dict)
    top_alternatives: list[list[tuple[str, float]]] = field(default_factory=list)

    def visible(self, g: int) -> np.ndarray:
        """The source tokens generated token g can depend on that are not special: what its
        row is normalised over.

        Args:
            g: The generated token's index.

        Returns:
            bool [S].
        """
        keep = np.arange(len(self.source_tokens)) < self.prompt_length + g
        return keep & ~self.special_mask

    def normalized(self, g: int) -> np.ndarray:
        """Row g divided by its largest absolute value over ``visible(g)`` (special tokens
        and later positions take no part in the scale), in [-1, 1]; all zeros when the row
        is zero.

        Args:
            g: The generated token's index, 0 <= g < G.

        Returns:
            float32 [S].

        Raises:
            ParameterError: g is not the index of a generated token.
        """
        if not 0 <= g < len(self.generated_tokens):
            raise ParameterError(f"g must be in [0, {len(self.generated_tokens) - 1}], got {g}")
        row = self.matrix[g].astype(np.float32)
        part = np.abs(row[self.visible(g)])
        scale = float(part.max()) if part.size else 0.0
        if scale <= 0:
            return np.zeros_like(row)
        return np.clip(np.where(self.visible(g), row / scale, 0.0), -1.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict:
        """Everything as plain JSON types.

        Returns:
            A dict of the fields, the matrix and probabilities as nested lists.
        """
        return {
            "source_tokens": list(self.source_tokens),
            "generated_tokens": list(self.generated_tokens),
            "source_ids": [int(i) for i in self.source_ids],
            "generated_ids": [int(i) for i in self.generated_ids],
            "matrix": self.matrix.astype(float).tolist(),
            "probabilities": self.probabilities.astype(float).tolist(),
            "target": self.target,
            "method": self.method,
            "params": self.params,
            "special_mask": [bool(v) for v in self.special_mask],
            "prompt_length": int(self.prompt_length),
            "metadata": self.metadata,
            "top_alternatives": [[[t, float(p)] for t, p in row] for row in self.top_alternatives],
        }

    def to_json(self, indent: int | None = None) -> str:
        """``to_dict`` as JSON text.

        Args:
            indent: Spaces per level (None: one line).

        Returns:
            The JSON document.
        """
        return json.dumps(self.to_dict(), indent=indent)

    def save_npz(self, path: str | Path | io.BytesIO) -> None:
        """The arrays (matrix, probabilities, ids, special_mask) and the rest as one JSON
        string entry ``meta``, in a NumPy .npz archive (no pickles: ``np.load`` reads it
        with ``allow_pickle=False``).

        Args:
            path: A file path, or a binary buffer.
        """
        meta = {k: v for k, v in self.to_dict().items()
                if k not in ("matrix", "probabilities", "source_ids", "generated_ids", "special_mask")}
        np.savez(path, matrix=self.matrix.astype(np.float32),
                 probabilities=self.probabilities.astype(np.float32),
                 source_ids=np.asarray(self.source_ids, dtype=np.int64),
                 generated_ids=np.asarray(self.generated_ids, dtype=np.int64),
                 special_mask=self.special_mask.astype(bool), meta=np.array(json.dumps(meta)))

    def _repr_html_(self) -> str:
        from saliency_core.show.notebook import generation_html

        return generation_html(self)

    def _repr_png_(self) -> bytes:
        from saliency_core.show.notebook import generation_png

        return generation_png(self)


class GenerationParams(MethodParams, total=False):
    """``attribute_generation``'s keyword parameters: the method's (as for ``attribute``) and
    these."""

    # How the embedding dimension becomes one number per token: "auto" sums input-weighted
    # attributions and takes the L2 norm of a plain gradient.
    aggregation: Literal["auto", "sum", "l2"]
    # The longest prompt explained, in tokens (default SALIENCY_MAX_PROMPT_TOKENS or 1024).
    max_prompt_tokens: int | None


# ---- the prompt ------------------------------------------------------------------------------

def _cap(value: int | None, env: str, default: int, what: str) -> int:
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ParameterError(f"{env} must be a whole number of tokens, got {raw!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{what} must be a positive whole number, got {value!r}")
    return value


def _special_ids(tokenizer) -> set[int]:
    """The ids marked special. An unknown-token stands for something the user wrote, so it is
    explained like any other token (as by the text classifiers), unless the tokenizer uses the
    same id to begin, end or pad a text (GPT-2's <|endoftext|> is all four)."""
    ids = {int(i) for i in (getattr(tokenizer, "all_special_ids", None) or [])}
    unk = getattr(tokenizer, "unk_token_id", None)
    structural = {getattr(tokenizer, f"{n}_token_id", None) for n in ("bos", "eos", "pad")}
    if unk is not None and unk not in structural:
        ids.discard(int(unk))
    return ids


def _encode(tokenizer, prompt) -> tuple[list[int], list[bool], str]:
    """(ids, special/template flags, the prompt as text) for a string or chat messages."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise SaliencyError("enter a prompt to explain")
        ids = [int(i) for i in tokenizer(prompt)["input_ids"]]
        special = _special_ids(tokenizer)
        return ids, [i in special for i in ids], prompt
    if isinstance(prompt, Sequence) and prompt and all(isinstance(m, dict) for m in prompt):
        return _encode_chat(tokenizer, list(prompt))
    raise SaliencyError("a prompt is a string, or a list of chat messages {'role': ..., 'content': ...}")


def _encode_chat(tokenizer, messages: list[dict]) -> tuple[list[int], list[bool], str]:
    """Chat messages through the tokenizer's template. Tokens that are not inside a message's
    content (role markers, separators, special tokens) are template tokens."""
    if not getattr(tokenizer, "chat_template", None):
        raise SaliencyError("this tokenizer has no chat template: give the prompt as a string")
    for m in messages:
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise SaliencyError("each chat message needs a 'role' and a 'content' string")
    if not any(m["content"].strip() for m in messages):
        raise SaliencyError("enter a prompt to explain: every chat message is empty")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # apply_chat_template(tokenize=True) tokenises the rendered text without special tokens
    # of its own; doing it here gives the character span of every token.
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    except (NotImplementedError, KeyError, TypeError, ValueError):
        enc, offsets = tokenizer(text, add_special_tokens=False), None
    ids = [int(i) for i in enc["input_ids"]]
    special = _special_ids(tokenizer)
    flags = [i in special for i in ids]
    if offsets is not None:
        spans, cursor = [], 0
        for m in messages:
            if not m["content"]:
                continue
            at = text.find(m["content"], cursor)
            if at >= 0:
                spans.append((at, at + len(m["content"])))
                cursor = at + len(m["content"])
        for k, (a, b) in enumerate(offsets):
            inside = any(a < e and b > s for s, e in spans)
            flags[k] = flags[k] or not inside
    return ids, flags, text


def _token_text(tokenizer, token_id: int) -> str:
    """A token as the text it stands for; the tokenizer's own symbol where decoding one token
    alone gives no text (a part of a multi-byte character)."""
    text = tokenizer.decode([token_id])
    if not text or "\ufffd" in text:
        converted = tokenizer.convert_ids_to_tokens([token_id])
        return str(converted[0]) if converted else text
    return text


def _one_token(tokenizer, value: int | str) -> int:
    """A contrast token as an id: an id as it is, a text that is exactly one token."""
    if isinstance(value, bool):
        raise TargetError("a contrast token is a token id or the text of one token, not a boolean")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value:
        raise TargetError(f"a contrast token is a token id or the text of one token; got {value!r}")
    ids = tokenizer(value, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [_token_text(tokenizer, int(i)) for i in ids]
        raise TargetError(f"the contrast {value!r} is {len(ids)} tokens ({pieces}); give one token "
                          "(mind the leading space: ' Paris' and 'Paris' are different tokens)")
    return int(ids[0])


def context_length(module: nn.Module) -> int | None:
    """How many positions the model reads, from its configuration (None when unsaid)."""
    config = getattr(module, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


# ---- the model -------------------------------------------------------------------------------

def _causal_lm(model, tokenizer) -> tuple[Any, Any]:
    # A Hugging Face LM keeps its decoder in ``.model`` (Llama, Qwen2...), which is what a
    # LoadedModel's field is called too: a module is taken as it is, never unwrapped.
    module = model if isinstance(model, nn.Module) else unwrap_model(model)[1]
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise SaliencyError("a tokenizer is needed: pass the model's tokenizer")
    if module is None or not hasattr(module, "get_input_embeddings"):
        raise SaliencyError("next-token attribution needs a Hugging Face causal language model "
                            "(get_input_embeddings() and inputs_embeds=)")
    return module, tokenizer


def _generate(module: Any, ids: torch.Tensor, count: int, tokenizer) -> list[int]:
    """Greedy continuation of ``ids`` [1, P]: up to ``count`` tokens, fewer when the model
    ends the text."""
    from transformers import GenerationConfig

    eos = getattr(getattr(module, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = eos[0] if isinstance(eos, list) and eos else eos
    # A configuration of its own: a checkpoint's sampling defaults (temperature, top_p) must
    # not turn the greedy continuation into a draw.
    config = GenerationConfig(max_new_tokens=count, do_sample=False, num_beams=1,
                              eos_token_id=eos, pad_token_id=pad)
    with _model_lock(module), torch.no_grad():
        out = module.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                              generation_config=config)
    return [int(i) for i in out[0, ids.shape[1]:].tolist()]


class _Sequence:
    """One tokenised sequence (prompt + generated) in embedding space, and the batched pass
    that gives every generated token's gradient at a chunk of points."""

    def __init__(self, module: Any, ids: torch.Tensor, prompt_length: int,
                 objective: TokenObjective, options: Options, stats: Stats):
        self.module = module
        self.device = module_device(module)
        self.ids = ids.to(self.device)  # [T]
        self.prompt_length = prompt_length
        self.count = ids.shape[0] - prompt_length  # G
        self.objective = objective
        self.embed = module.get_input_embeddings()
        with torch.no_grad():
            self.embeds = self.embed(self.ids[None])[0].detach()  # [T, D]
        self.head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
        try:
            self.keep_logits = "logits_to_keep" in inspect.signature(module.forward).parameters
        except (TypeError, ValueError):
            self.keep_logits = False
        self.stream = GradientStream(self._locked_forward, self.device, options, stats, module=module)
        self.batched: list[bool] = []
        # Set by a caller whose points are the input itself (gradient, gradient x input): the
        # logits of that pass, so the probabilities cost no forward pass of their own.
        self.keep_input_logits = False
        self.input_logits: torch.Tensor | None = None

    # A forward at points [m, T, D]: (logits [m, G, V] at the positions before the G
    # tokens, the output layer's input h as the model computed it, the leaf that replaced it).
    def _forward(self, points: torch.Tensor):
        g = self.count
        store: dict = {}
        handle = None
        if self.head is not None and points.requires_grad:
            def swap(_module, args):
                h = args[0]
                leaf = h.detach().requires_grad_(True)
                store["h"], store["leaf"] = h, leaf
                return (leaf, *args[1:])
            handle = self.head.register_forward_pre_hook(swap)
        kwargs: dict[str, Any] = {"inputs_embeds": points, "use_cache": False,
                                  "attention_mask": torch.ones(points.shape[:2], dtype=torch.long,
                                                               device=points.device)}
        if self.keep_logits:
            kwargs["logits_to_keep"] = g + 1
        try:
            out = self.module(**kwargs)
        finally:
            if handle is not None:
                handle.remove()
        logits = out.logits if hasattr(out, "logits") else out[0]
        n = logits.shape[1]
        return logits[:, n - g - 1:n - 1], store.get("h"), store.get("leaf")

    def _locked_forward(self, points: torch.Tensor):
        # The hook lives on the shared model for this call only: under the model's lock.
        with _model_lock(self.module):
            return self._forward(points)

    def gradients(self, points: torch.Tensor) -> torch.Tensor:
        """d score_g / d points for every generated token g: [G, m, T, D]."""
        g = self.count
        points = points.detach().requires_grad_(True)
        with torch.enable_grad():
            logits, h, leaf = self._locked_forward(points)
            if self.keep_input_logits and self.input_logits is None:
                self.input_logits = logits[:1].detach()
            scores = self.objective.score(logits)  # [m, G]
            if h is None or leaf is None or not h.requires_grad:
                return self._dense(scores, points)
            # The output layer works row by row, so each score's gradient is on its own row.
            (gh,) = torch.autograd.grad(scores.sum(), leaf)
            n = h.shape[1]
            rows = torch.arange(g, device=h.device)
            seeds = h.new_zeros((g, *h.shape))
            seeds[rows, :, n - g - 1 + rows, :] = gh[:, n - g - 1:n - 1].transpose(0, 1)
            try:
                (grads,) = torch.autograd.grad(h, points, grad_outputs=seeds, is_grads_batched=True,
                                               retain_graph=True)
                self.batched.append(True)
            except (RuntimeError, NotImplementedError) as exc:
                if is_out_of_memory(exc):
                    raise  # the stream retries with fewer points
                # vmap has no batching rule for one of the model's operators: one backward per
                # token on the kept graph (the forward is still shared).
                grads = torch.stack([torch.autograd.grad(h, points, grad_outputs=seeds[k],
                                                         retain_graph=True)[0] for k in range(g)])
                self.batched.append(False)
        return grads.detach()

    def _dense(self, scores: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        g = self.count
        eye = torch.eye(g, dtype=scores.dtype, device=scores.device)
        seeds = eye[:, None, :].expand(g, scores.shape[0], g)
        try:
            (grads,) = torch.autograd.grad(scores, points, grad_outputs=seeds, is_grads_batched=True,
                                           retain_graph=True)  # kept for the fallback below
            self.batched.append(True)
        except (RuntimeError, NotImplementedError) as exc:
            if is_out_of_memory(exc):
                raise
            grads = torch.stack([torch.autograd.grad(scores[:, k].sum(), points, retain_graph=True)[0]
                                 for k in range(g)])
            self.batched.append(False)
        return grads.detach()

    def scores_at(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [m, G], logits [m, G, V]) without a graph."""
        with torch.no_grad():
            logits, _h, _leaf = self._locked_forward(points)
        self.stream.stats.forwards += points.shape[0]
        return self.objective.score(logits), logits

    def weighted_gradients(self, total: int, per_group: int,
                           point: Callable[[int, torch.Tensor], torch.Tensor],
                           weights: torch.Tensor, done: Callable[[int, torch.Tensor], None]) -> None:
        """For groups of ``per_group`` points (an IG path, one noisy copy's path), calls
        ``done(group, Σ_k weights[k] ∇score_g(point(group, k)))`` with the sum [G, T, D] as
        soon as the group's points are all through. Point i is node i % per_group of group
        i // per_group; every chunk of points goes through the stream."""
        partial: dict[int, torch.Tensor] = {}
        weights = weights.to(self.device, self.embeds.dtype)

        def make(start: int, stop: int):
            index = torch.arange(start, stop)
            groups = index // per_group
            nodes = index % per_group
            pts = torch.cat([point(int(j), nodes[groups == j]) for j in groups.unique()])
            return pts, (groups, nodes)

        def take(_stream, pts, labels):
            groups, nodes = labels
            grads = self.gradients(pts)  # [G, m, T, D]
            folded = {}
            for j in groups.unique().tolist():
                sel = (groups == j).nonzero()[:, 0].to(self.device)
                w = weights[nodes[groups == j].to(self.device)]
                folded[j] = torch.einsum("m,gmtd->gtd", w, grads.index_select(1, sel))
            return None, (folded,)

        def consume(start: int, stop: int, folded: dict):
            for j, part in folded.items():
                partial[j] = part if j not in partial else partial[j] + part
                if (j + 1) * per_group <= stop:
                    done(j, partial.pop(j))

        layers = getattr(getattr(self.module, "config", None), "num_hidden_layers", None) or 12
        # A backward batched over G targets holds about one layer's gradients per target at
        # a time, on top of the graph the forward kept.
        weight = 1.0 + 2.0 * self.count / max(1, int(layers))
        self.stream.run(total, make, consume, step=Step("input_gradient", take), weight=weight)


# ---- the methods -----------------------------------------------------------------------------

def _baseline(name, seq: _Sequence, x: torch.Tensor, moving: torch.Tensor, tokenizer,
              notes: list[str]) -> torch.Tensor:
    """The baseline [T, D] of a sequence whose positions ``moving`` go along the path: those
    become the baseline token's embedding (or zeros); every other position stays."""
    if isinstance(name, torch.Tensor):
        replaced = torch.broadcast_to(name.to(x.device, x.dtype), x.shape)
    elif name == "zeros":
        replaced = torch.zeros_like(x)
    elif name in ("pad", "unk", "mask"):
        token = getattr(tokenizer, f"{name}_token_id", None)
        if token is None and name in ("pad", "unk"):
            token = getattr(tokenizer, "eos_token_id", None)
            if token is not None:
                notes.append(f"this tokenizer has no {name} token: the baseline is the end-of-text "
                             f"token {_token_text(tokenizer, int(token))!r}")
        if token is None:
            raise ParameterError(f"this tokenizer has no {name} token; choose the zeros baseline")
        with torch.no_grad():
            replaced = seq.embed(torch.full_like(seq.ids, int(token))[None])[0].to(x.dtype)
    else:
        raise ParameterError(f"baselines for a language model are {', '.join(GENERATION_BASELINES)}; "
                             f"got {name!r}")
    return torch.where(moving[:, None], replaced, x)


def _path(seq: _Sequence, starts: torch.Tensor, ends: torch.Tensor, steps: int, quadrature: str,
          times: Callable[[int], torch.Tensor], done: Callable[[int, torch.Tensor], None]) -> None:
    """Integrated Gradients from ``starts[j]`` to ``ends[j]`` for every j, one stream:
    ``done(j, attribution [G, T, D])``."""
    alphas, weights = quadrature_rule(quadrature, steps)
    a = torch.as_tensor(alphas, dtype=seq.embeds.dtype, device=seq.device)
    diff = ends - starts

    def point(j: int, nodes: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(starts[j], a[nodes.to(seq.device)].view(-1, 1, 1), diff[j])

    def finish(j: int, summed: torch.Tensor) -> None:
        done(j, summed * times(j))

    seq.weighted_gradients(starts.shape[0] * steps, steps, point, torch.as_tensor(weights), finish)


def _at_points(seq: _Sequence, xs: torch.Tensor, times_input: bool,
               done: Callable[[int, torch.Tensor], None]) -> None:
    """The gradient (times the point, for gradient x input) at each of ``xs`` [n, T, D]."""
    def point(j: int, nodes: torch.Tensor) -> torch.Tensor:
        return xs[j].expand(nodes.shape[0], *xs.shape[1:])

    def finish(j: int, g: torch.Tensor) -> None:
        done(j, g * xs[j] if times_input else g)

    seq.weighted_gradients(xs.shape[0], 1, point, torch.ones(1), finish)


def _one_method(name: str, p: dict, seq: _Sequence, xs: torch.Tensor, moving: torch.Tensor,
                tokenizer, notes: list[str], done: Callable[[int, torch.Tensor], None]) -> dict:
    """Runs a method that does not wrap another at each of ``xs``: a path method (one with a
    completeness check: Integrated Gradients) along its path, the others at the points,
    times the input when the method says so. Returns what a completeness check needs (the
    path's baselines)."""
    entry = method_entry(name)
    if entry.completeness is not None:
        notes.append("Integrated Gradients moves the prompt's tokens along its path (as Captum's "
                     "LLMGradientAttribution): generated tokens get no attribution of their own")
        base = torch.stack([_baseline(p["baseline"], seq, x, moving, tokenizer, notes) for x in xs])
        _path(seq, base, xs, p["steps"], p["quadrature"], lambda j: xs[j] - base[j], done)
        return {"baselines": base}
    _at_points(seq, xs, entry.times_input, done)
    return {}


def _check_method(method: str, params: dict) -> None:
    entry = method_entry(method)
    if method not in GENERATION_METHODS:
        raise MethodNotApplicableError(f"{method} does not explain generated tokens; use one of "
                                       f"{', '.join(GENERATION_METHODS)}")
    if entry.wraps:
        base = params.get("base", entry.spec.param("base").default)
        inner = [n for n in GENERATION_METHODS if not method_entry(n).wraps]
        if base not in inner:
            raise MethodNotApplicableError(f"{method} over a language model wraps one of "
                                           f"{', '.join(inner)}; got {base!r}")
    if params.get("baseline_samples", 1) not in (1, None):
        raise ParameterError("a language model's baselines are not random: baseline_samples is 1")
    baseline = params.get("baseline")
    if isinstance(baseline, str) and baseline not in (*GENERATION_BASELINES, "mask"):
        raise ParameterError(f"baselines for a language model are {', '.join(GENERATION_BASELINES)}; "
                             f"got {baseline!r}")


# ``progress`` is named in the signature (the API every caller of a language model reads) and
# is also one of the engine options every method's TypedDict carries; the two are one option.
def attribute_generation(model: Any, tokenizer: Any, prompt: str | list[dict], method: str, *,  # type: ignore[misc]
                         continuation: str | None = None, max_new_tokens: int = 8,
                         target: str | NextToken = "log_prob",
                         contrast: int | str | Sequence[int | str] | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         should_stop: Any = None,
                         **params: Unpack[GenerationParams]) -> GenerationAttribution:
    """Which earlier tokens made a causal language model predict each generated token.

    All generated tokens are explained together: each point of the method costs one forward
    pass over the whole sequence, shared by every token, and one batched backward (see the
    module's notes), chunked by the engine's stream.

    Args:
        model: A Hugging Face causal language model (GPT-2, Llama, Qwen2, Gemma, GPT-NeoX,
            OPT...) or a ``LoadedModel`` of task "text-generation". Never changed.
        tokenizer: Its tokenizer (None: the loaded model's).
        prompt: The text before the generated tokens, or a list of chat messages
            (``{"role": ..., "content": ...}``) when the tokenizer has a chat template.
        method: "gradient", "gradient_x_input", "integrated_gradients" or "smoothgrad"
            (around one of the three, ``base=``).
        continuation: The text to explain after the prompt (teacher forcing); None: the
            model's greedy continuation of ``max_new_tokens`` tokens.
        max_new_tokens: Tokens to generate when ``continuation`` is None (at most the cap,
            ``SALIENCY_MAX_NEW_TOKENS``, 256 by default).
        target: The score of each generated token: "log_prob" (default, as Captum), "logit"
            or "probability"; or a ``saliency_core.targets.NextToken``.
        contrast: A token (its id, or its text when that is one token), or one per
            generated token: explains score(token) - score(contrast), i.e. log p(token) -
            log p(contrast) for "log_prob".
        progress: Called with (points done, points in all) as the work goes.
        should_stop: An event (``is_set()``) or a callable returning True to stop; the call
            then raises ``CancelledError``.
        **params: The method's parameters (``steps``, ``baseline``: "pad" (the pad token,
            else end-of-text), "unk" (else end-of-text), "zeros"; ``samples``, ``sigma``,
            ``base``...), ``aggregation`` ("auto", "sum", "l2"), ``max_prompt_tokens``
            (default ``SALIENCY_MAX_PROMPT_TOKENS`` or 1024), and the engine options
            ``batch_size`` and ``memory_budget``.

    Returns:
        A ``GenerationAttribution``.

    Raises:
        SaliencyError: An empty prompt, a model that is not a causal language model, or one
            that generated nothing.
        InputShapeError: A prompt longer than the cap, or prompt and continuation longer than
            the model's context (nothing is truncated silently).
        ParameterError: ``max_new_tokens`` out of range, an unknown parameter or baseline.
        TargetError: An unknown score, or a contrast that is not one token of the vocabulary.
        MethodNotApplicableError: A method that does not explain generated tokens.
        CancelledError: ``should_stop`` was set.

    Example:
        >>> import saliency_core as sc
        >>> from saliency_core.text.generation import tiny_language_model
        >>> model, tokenizer = tiny_language_model()
        >>> ga = sc.attribute_generation(model, tokenizer, "the cat sat on", "integrated_gradients",
        ...                              continuation=" the mat", steps=16)
        >>> ga.generated_tokens, ga.matrix.shape
        ([' the', ' mat'], (2, 6))
        >>> check = ga.metadata["completeness"]
        >>> max(map(abs, check["relative_gap"])) < 0.05
        True
    """
    started = time.perf_counter()
    module, tokenizer = _causal_lm(model, tokenizer)
    params: dict[str, Any] = dict(params)  # type: ignore[no-redef]
    aggregation = params.pop("aggregation", "auto")
    if aggregation not in ("auto", "sum", "l2"):
        raise ParameterError(f"aggregation must be one of auto, sum, l2; got {aggregation!r}")
    prompt_cap = _cap(params.pop("max_prompt_tokens", None), MAX_PROMPT_ENV, DEFAULT_MAX_PROMPT_TOKENS,
                      "max_prompt_tokens")
    new_cap = _cap(None, MAX_NEW_TOKENS_ENV, DEFAULT_MAX_NEW_TOKENS, MAX_NEW_TOKENS_ENV)
    _check_method(method, params)
    params["progress"] = progress if progress is not None else params.get("progress")
    params["cancel"] = should_stop if should_stop is not None else params.get("cancel")
    entry = method_entry(method)
    p, base, base_p, options = split_params(entry, params, "text")

    prompt_ids, special, _text = _encode(tokenizer, prompt)
    if not prompt_ids:
        raise SaliencyError("the prompt has no tokens: enter some text")
    plen = len(prompt_ids)
    if plen > prompt_cap:
        raise InputShapeError(f"the prompt has {plen} tokens; at most {prompt_cap} are explained "
                              f"(max_prompt_tokens or {MAX_PROMPT_ENV}). Shorten the prompt: nothing "
                              "is cut off silently")
    if continuation is None:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
                or not 1 <= max_new_tokens <= new_cap:
            raise ParameterError(f"max_new_tokens must be a whole number in [1, {new_cap}] "
                                 f"({MAX_NEW_TOKENS_ENV}); got {max_new_tokens!r}")
        wanted = max_new_tokens
    else:
        if not isinstance(continuation, str) or not continuation:
            raise SaliencyError("the continuation is empty: give the text to explain, or None to "
                                "let the model generate")
        given = [int(i) for i in tokenizer(continuation, add_special_tokens=False)["input_ids"]]
        if not given:
            raise SaliencyError("the continuation has no tokens")
        if len(given) > new_cap:
            raise ParameterError(f"the continuation has {len(given)} tokens; at most {new_cap} are "
                                 f"explained ({MAX_NEW_TOKENS_ENV})")
        wanted = len(given)
    context = context_length(module)
    if context is not None and plen + wanted > context:
        raise InputShapeError(f"the prompt has {plen} tokens and {wanted} more are to be explained; "
                              f"this model reads at most {context}. Shorten the prompt or ask for "
                              "fewer tokens: nothing is cut off silently")
    device = module_device(module)
    ids = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    if continuation is None:
        generated = _generate(module, ids[None], wanted, tokenizer)
        if not generated:
            raise SaliencyError("the model generated nothing after this prompt")
    else:
        generated = given
    full = torch.cat([ids, torch.tensor(generated, dtype=torch.long, device=device)])
    vocab = int(module.get_input_embeddings().weight.shape[0])
    objective = resolve_next_token(
        target if isinstance(target, NextToken) else NextToken(target, contrast),
        full[plen:], vocab, lambda v: _one_token(tokenizer, v))

    stats = Stats()
    seq = _Sequence(module, full, plen, objective, options, stats)
    flags = torch.tensor(special + [False] * len(generated), device=device)
    prompt_part = torch.arange(full.shape[0], device=device) < plen
    moving_prompt = prompt_part & ~flags  # what IG's path moves
    notes: list[str] = []
    x = seq.embeds
    g_count = len(generated)

    extra: dict = {}
    if entry.wraps:
        assert base is not None and base_p is not None
        samples = p["samples"]
        noise = NoiseSource(x[None], p["sigma"], p["seed"])
        noisy = noise.take(samples)  # [samples, T, D]
        # Noise goes on the tokens, not on special or template tokens.
        noisy = torch.where((~flags)[None, :, None], noisy, x[None])
        sums = torch.zeros((g_count, *x.shape), dtype=x.dtype, device=device)
        squares = torch.zeros_like(sums)

        def fold(_j: int, a: torch.Tensor) -> None:
            sums.add_(a)
            squares.add_(a * a)

        _one_method(base.name, base_p, seq, noisy, moving_prompt, tokenizer, notes, fold)
        attr = combine_samples(p["variant"], sums, squares, samples)
    else:
        out: dict[int, torch.Tensor] = {}
        # A method without a path takes its one point at the input: that pass's logits are
        # the model's output there.
        seq.keep_input_logits = entry.completeness is None
        extra = _one_method(method, p, seq, x[None], moving_prompt, tokenizer, notes,
                            lambda j, a: out.__setitem__(j, a))
        attr = out[0]

    if seq.input_logits is not None:
        logits = seq.input_logits
        f_x = objective.score(logits)
    else:
        f_x, logits = seq.scores_at(x[None])
    probs = torch.softmax(logits[0].float(), -1)  # [G, V]
    chosen = probs.gather(1, full[plen:, None])[:, 0]
    top = probs.topk(min(TOP_ALTERNATIVES, probs.shape[-1]), dim=-1)
    alternatives = [[(_token_text(tokenizer, int(i)), float(v)) for i, v in zip(ids_row, vals_row)]
                    for ids_row, vals_row in zip(top.indices.tolist(), top.values.tolist())]

    weighted = entry.includes_input(p if base is None else {**p, "base": base.name})
    mode = aggregation if aggregation != "auto" else ("sum" if weighted else "l2")
    per_token = attr.sum(-1) if mode == "sum" else attr.norm(dim=-1)  # [G, T]
    positions = torch.arange(full.shape[0], device=device)
    causal = positions[None, :] < (plen + torch.arange(g_count, device=device))[:, None]
    per_token = torch.where(causal, per_token, torch.zeros_like(per_token))
    if device.type == "cuda":
        torch.cuda.synchronize(device)

    params_json = {k: (f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else v)
                   for k, v in {**p, **(base_p or {})}.items()}
    meta: dict[str, Any] = {
        "method": method, "params": params_json, "aggregation": mode,
        "time_s": time.perf_counter() - started, "passes": stats.passes, "forwards": stats.forwards,
        "chunk_size": stats.chunk_size, "oom_retries": stats.oom_retries, "device": str(device),
        "backward_batched": bool(seq.batched) and all(seq.batched),
        "generated": continuation is None, "num_prompt_tokens": plen, "num_generated": g_count,
        "target_value": objective.value,
    }
    if notes:
        meta["notes"] = sorted(set(notes))
    if "baselines" in extra:
        f_b, _ = seq.scores_at(extra["baselines"])
        total = attr.flatten(1).sum(1)
        expected = f_x[0] - f_b[0]
        gap = (total - expected) / expected.abs().clamp_min(1e-6)
        meta["completeness"] = {
            "f_x": f_x[0].tolist(), "f_baseline": f_b[0].tolist(),
            "sum_attribution": total.tolist(), "delta": (total - expected).tolist(),
            "relative_gap": gap.tolist(),
        }
    source_ids = full.tolist()
    return GenerationAttribution(
        source_tokens=[_token_text(tokenizer, i) for i in source_ids],
        generated_tokens=[_token_text(tokenizer, i) for i in generated],
        source_ids=source_ids,
        generated_ids=list(generated),
        matrix=per_token.detach().float().cpu().numpy(),
        probabilities=chosen.detach().float().cpu().numpy(),
        target=objective.value,
        method=method,
        params=params_json,
        special_mask=flags.cpu().numpy().astype(bool),
        prompt_length=plen,
        metadata=meta,
        top_alternatives=alternatives,
    )


# ---- a model to try things on ----------------------------------------------------------------

TINY_CORPUS = ("the cat sat on the mat . the dog sat on the rug . a bird sang in the tree . "
               "the cat saw the dog and the dog saw the bird . paris is the capital of france .")


def tiny_tokenizer(corpus: str = TINY_CORPUS, vocab_size: int = 320):
    """A byte-level BPE tokenizer trained on ``corpus`` in milliseconds, offline, with GPT-2's
    conventions (a leading space belongs to the next word; <|endoftext|> ends a text).

    Example:
        >>> tok = tiny_tokenizer()
        >>> tok.decode(tok("the cat")["input_ids"])
        'the cat'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator([corpus], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",  # nosec B106 - a token's text
                                   bos_token="<|endoftext|>", unk_token="<|endoftext|>")


def tiny_language_model(seed: int = 0, layers: int = 2, width: int = 32, tokenizer=None):
    """(model, tokenizer): a GPT-2 with seeded random weights built from a configuration, no
    download; for examples and tests, not for meaning.

    Example:
        >>> model, tok = tiny_language_model()
        >>> model.config.n_layer, model.training
        (2, False)
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tokenizer or tiny_tokenizer()
    torch.manual_seed(seed)
    # Eager attention: every operator of its backward has a batching rule for vmap.
    eager: dict[str, Any] = {"attn_implementation": "eager"}
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=width, n_layer=layers,
                        n_head=2, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, **eager)
    return GPT2LMHeadModel(config).eval(), tokenizer


__all__ = ["GENERATION_BASELINES", "GENERATION_METHODS", "GenerationAttribution", "GenerationParams",
           "attribute_generation", "context_length", "tiny_language_model", "tiny_tokenizer"]
