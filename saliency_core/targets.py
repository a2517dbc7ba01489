"""Targets as values: what an attribution explains.

Every method differentiates one score per input. Which score is the target:

- ``"predicted"``: each input's top class (the default);
- a class index (``3``) or a class name (``"cross"``, resolved against a loaded model's
  labels), the same for every input; or one index or name per input;
- ``Contrast("cat", rather_than="dog")``: the logit of one class minus another's, the
  evidence for the first *rather than* the second;
- a function of the model's output, ``logits [N, K] -> scores [N]`` (as pytorch-grad-cam's
  target callables), for any score the classes above do not describe.

``resolve`` turns a value into an ``Objective`` for one call: the classes explained per input
and the score function the engine differentiates. The engine knows nothing of classes; it is
handed ``Objective.score``. ``describe`` gives a value's JSON-able form (explanation metadata,
the wire to the engine service) and ``target_key`` a stable text key (result caches, batching).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from saliency_core.errors import TargetError

PREDICTED = "predicted"
# Explanation.target for a target function: it explains a score, not a class.
NO_CLASS = -1

#: A target function: the model's logits [N, K] -> one score per row [N]. It is applied to
#: chunks of points (the rows need not be the caller's inputs: Integrated Gradients' path
#: points, SmoothGrad's noisy copies), so it must score each row on its own.
ScoreFunction = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Contrast:
    """The evidence for class ``target`` rather than class ``rather_than``.

    The score is ``logit[target] - logit[rather_than]``, which equals
    ``log p[target] - log p[rather_than]``: the softmax's normaliser is the same for both
    classes and cancels. So the attribution shows what makes the model prefer one class to
    the other, not what makes either likely. Gradient-based attributions are linear in the
    score, so for the gradient it is exactly the first class's attribution minus the second's.

    Attributes:
        target: The class explained: an index, a name, ``"predicted"``, or one index or name
            per input.
        rather_than: The class it is weighed against, the same for every input: an index or
            a name.

    Example:
        >>> import torch, saliency_core as sc
        >>> from saliency_core.targets import Contrast
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> e = sc.explain(loaded, torch.rand(1, 3, 64, 64), "gradient",
        ...                target=Contrast("circle", rather_than="square"))
        >>> e.metadata["target_value"]
        {'target': 'circle', 'rather_than': 'square'}
    """

    target: int | str | Sequence[int | str]
    rather_than: int | str


#: What to explain: "predicted" (each input's top class), one class index or name for every
#: input, one per input, a Contrast (one class rather than another), or a function of the
#: logits [N, K] -> scores [N].
Target = (int | str | Sequence[int | str] | torch.Tensor | Literal["predicted"] | Contrast
          | Callable[[torch.Tensor], torch.Tensor])


@dataclass
class Objective:
    """A target resolved for one call: the classes explained and the score to differentiate.

    Attributes:
        classes: LongTensor [N], the class explained per input (the contrast's first class;
            ``NO_CLASS`` for a target function); None while "predicted" waits for the pass
            that reads each point's top class.
        value: The target's JSON-able form (``describe``), for metadata.
    """

    classes: torch.Tensor | None
    value: Any
    class_range: tuple[int, int] | None = None  # (min, max) of ``classes``, read on the host
    rather_than: int | None = None
    function: ScoreFunction | None = None

    def score(self, logits: torch.Tensor, classes: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [m], classes [m]) at a chunk of points: ``classes`` are the chunk's own
        (None: each point's top class). What the engine differentiates."""
        if logits.dim() != 2:
            logits = logits.reshape(logits.shape[0], -1)
        if self.function is not None:
            scores = _function_scores(self.function, logits)
            if classes is None:
                classes = torch.full((logits.shape[0],), NO_CLASS, dtype=torch.long,
                                     device=logits.device)
            return scores, classes
        num_classes = logits.shape[1]
        if classes is None:
            classes = logits.detach().argmax(dim=1)
        elif self.class_range is not None:
            # Known on the host: no device read between a chunk's forward and backward pass.
            check_range(self.class_range, num_classes)
        else:
            check_classes(classes, num_classes)
        scores = logits.gather(1, classes[:, None]).squeeze(1)
        if self.rather_than is not None:
            check_range((self.rather_than, self.rather_than), num_classes)
            scores = scores - logits[:, self.rather_than]
        return scores, classes


def check_range(class_range: tuple[int, int], num_classes: int) -> None:
    low, high = class_range
    if low < 0 or high >= num_classes:
        bad = high if high >= num_classes else low
        raise TargetError(f"target class {bad} is out of range: the model has {num_classes} "
                          f"outputs (0..{num_classes - 1})")


def check_classes(classes: torch.Tensor, num_classes: int) -> None:
    if classes.numel():
        check_range((int(classes.min()), int(classes.max())), num_classes)


def _function_scores(function: ScoreFunction, logits: torch.Tensor) -> torch.Tensor:
    m = logits.shape[0]
    scores = function(logits)
    if not isinstance(scores, torch.Tensor):
        raise TargetError(f"the target function returned {type(scores).__name__}; it must return "
                          f"a tensor of one score per row of the logits [{m}]")
    if scores.dim() == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if tuple(scores.shape) != (m,):
        raise TargetError(f"the target function returned shape {tuple(scores.shape)} for logits "
                          f"of shape {tuple(logits.shape)}; it must return one score per row, [{m}]")
    if logits.requires_grad and not scores.requires_grad:
        raise TargetError("the target function's scores do not depend on the logits (detached, "
                          "or computed from something else); build them from the logits it is given")
    return scores


# ---- reading a target value ------------------------------------------------------------------

def is_function(target: Any) -> bool:
    return callable(target) and not isinstance(target, (torch.Tensor, Contrast, str))


def needs_logits(target: Any) -> bool:
    """Whether resolving ``target`` reads the model's output (each input's top class)."""
    if isinstance(target, Contrast):
        return needs_logits(target.target)
    return isinstance(target, str) and target == PREDICTED


def class_index(value: int | str | torch.Tensor, labels: Sequence[str] | None) -> int:
    """One class as an index: an int as it is, a name looked up in ``labels`` (exactly, else
    ignoring case). Unknown names raise a TargetError naming the closest labels."""
    if isinstance(value, bool):
        raise TargetError("a target class is an index or a name, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        return int(value)
    if not isinstance(value, str):
        raise TargetError(f"a target class is an index or a name; got {value!r}")
    if labels is None:
        raise TargetError(f"the class name {value!r} needs a model with labels (a loaded model, "
                          "sc.load_model); for a plain nn.Module give the class index")
    names = [str(label) for label in labels]
    if value in names:
        return names.index(value)
    folded = [n.lower() for n in names]
    if folded.count(value.lower()) == 1:
        return folded.index(value.lower())
    close = difflib.get_close_matches(value.lower(), folded, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(names[folded.index(c)]) for c in close)}?" if close else ""
    raise TargetError(f"unknown class {value!r}: the model's classes are indices 0-{len(names) - 1} "
                      f"or names such as {', '.join(repr(n) for n in names[:5])}.{hint}")


def _classes_of(target: Any, n: int | None, device, logits: torch.Tensor | None,
                labels: Sequence[str] | None) -> tuple[torch.Tensor | None, tuple[int, int] | None]:
    """(classes, their (min, max) when known on the host) for a class-like target."""
    if isinstance(target, str) and target == PREDICTED:
        if logits is None:
            return None, None
        top = logits.reshape(logits.shape[0], -1).argmax(1)
        return top, (int(top.min()), int(top.max()))  # one read now, none per chunk
    if isinstance(target, (str, int)) or (isinstance(target, torch.Tensor) and target.dim() == 0):
        k = class_index(target, labels)
        if n is None:
            return torch.tensor([k], dtype=torch.long, device=device), (k, k)
        return torch.full((n,), k, dtype=torch.long, device=device), (k, k)
    if isinstance(target, Sequence) and any(isinstance(t, str) for t in target):
        target = [class_index(t, labels) for t in target]
    try:
        t = torch.as_tensor(target, dtype=torch.long, device=device).flatten()
    except (TypeError, ValueError, RuntimeError):
        wanted = f"a sequence of {n} classes" if n is not None else "a sequence of classes"
        raise TargetError(f"target must be a class index or name, {wanted}, 'predicted', a "
                          f"Contrast or a function of the logits; got {target!r}") from None
    if n is None and t.numel() == 0:
        raise TargetError("give at least one target class")
    if n is not None and t.numel() != n:
        raise TargetError(f"got {t.numel()} targets for {n} inputs")
    if isinstance(target, (list, tuple)) and target and all(isinstance(v, int) for v in target):
        return t, (min(target), max(target))  # the caller's ints: no device read
    return t, (int(t.min()), int(t.max()))


def resolve(target: Target, n: int | None, device: torch.device | str,
            logits: torch.Tensor | None = None, labels: Sequence[str] | None = None) -> Objective:
    """The Objective of ``target`` for n inputs (n None: any number of classes, as for several
    targets of one input). Names are looked up in ``labels``; "predicted" is read from
    ``logits`` when given (else at each pass); with logits, classes are checked against the
    model's number of outputs."""
    value = describe(target)
    if is_function(target):
        count = n if n is not None else 1
        return Objective(torch.full((count,), NO_CLASS, dtype=torch.long, device=device), value,
                         function=target)  # type: ignore[arg-type]
    rather_than = None
    if isinstance(target, Contrast):
        if isinstance(target.rather_than, str) and target.rather_than == PREDICTED:
            raise TargetError("a contrast weighs a class against one fixed class: give "
                              "rather_than as a class index or name, not 'predicted'")
        rather_than = class_index(target.rather_than, labels)
        target = target.target
        if isinstance(target, Contrast) or is_function(target):
            raise TargetError("a contrast weighs one class against another; its target is a "
                              "class index, a name or 'predicted'")
    classes, class_range = _classes_of(target, n, device, logits, labels)
    objective = Objective(classes, value, class_range=class_range, rather_than=rather_than)
    if logits is not None:
        num_classes = logits.reshape(logits.shape[0], -1).shape[1]
        if class_range is not None:
            check_range(class_range, num_classes)
        if rather_than is not None:
            check_range((rather_than, rather_than), num_classes)
    return objective


def class_objective() -> Objective:
    """The objective of "predicted" before it is read: each point's top class."""
    return Objective(None, PREDICTED)


def several(targets: Any, labels: Sequence[str] | None, logits: torch.Tensor
            ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], list]:
    """Several targets of one input: (classes [K], scores(logits [1, K]) -> [K], their JSON
    forms). ``targets`` is a sequence (or tensor) whose items are each one target."""
    if isinstance(targets, torch.Tensor) or not isinstance(targets, Sequence) or isinstance(targets, str):
        items = torch.as_tensor(targets).flatten().tolist() if isinstance(targets, torch.Tensor) \
            else [targets]
    else:
        items = list(targets)
    if not items:
        raise TargetError("give at least one target")
    objectives = [resolve(item, 1, logits.device, logits, labels) for item in items]
    assert all(o.classes is not None for o in objectives)  # logits were given
    classes = torch.cat([o.classes for o in objectives if o.classes is not None])
    plain = all(o.function is None and o.rather_than is None for o in objectives)

    def scores(flat: torch.Tensor) -> torch.Tensor:
        if plain:  # one indexing for them all, as a single class is read
            return flat[0, classes]
        return torch.cat([o.score(flat, o.classes)[0] for o in objectives])

    return classes, scores, [o.value for o in objectives]


# ---- a causal language model's next tokens ---------------------------------------------------

#: How a generated token's score is read off the logits at the position before it.
TOKEN_SCORES = ("log_prob", "logit", "probability")


@dataclass(frozen=True)
class NextToken:
    """What a causal language model's attribution explains at each generated position: the
    token generated there, scored as its log-probability (the default, as Captum's
    LLMGradientAttribution), its logit or its probability, optionally *rather than* another
    token.

    With ``rather_than`` the score is ``score(token) - score(rather_than)``: for "log_prob"
    and "logit" that is the same number (the softmax's normaliser cancels), the evidence for
    the generated token over the other one; for "probability" it is the difference of the
    two probabilities.

    Attributes:
        score: "log_prob", "logit" or "probability".
        rather_than: A token (its id, or its text when it is exactly one token) weighed
            against every generated token, one per generated token, or None.

    Example:
        >>> from saliency_core.targets import NextToken, describe
        >>> describe(NextToken("logit", rather_than=" Rome"))
        {'score': 'logit', 'rather_than': ' Rome'}
    """

    score: str = "log_prob"
    rather_than: int | str | Sequence[int | str] | None = None


@dataclass
class TokenObjective:
    """A ``NextToken`` resolved for one sequence: the ids explained and weighed against.

    Attributes:
        tokens: LongTensor [G], the token explained at each generated position.
        scale: "log_prob", "logit" or "probability".
        rather_than: LongTensor [G] of contrast tokens, or None.
        value: The target's JSON-able form (``describe``).
    """

    tokens: torch.Tensor
    scale: str
    rather_than: torch.Tensor | None
    value: Any

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores [m, G] from the logits [m, G, V] at the positions before the G tokens
        (row g of every point explains ``tokens[g]``). Computed in float32 at least, so a
        half-precision model's log-softmax does not round the explained score."""
        values = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        if self.scale == "log_prob":
            values = torch.log_softmax(values, dim=-1)
        elif self.scale == "probability":
            values = torch.softmax(values, dim=-1)
        m = values.shape[0]
        scores = values.gather(2, self.tokens.view(1, -1, 1).expand(m, -1, 1))[..., 0]
        if self.rather_than is not None:
            scores = scores - values.gather(2, self.rather_than.view(1, -1, 1).expand(m, -1, 1))[..., 0]
        return scores


def resolve_next_token(target: Any, tokens: torch.Tensor, vocab_size: int,
                       token_id: Callable[[int | str], int]) -> TokenObjective:
    """The TokenObjective of ``target`` (a ``NextToken`` or one of ``TOKEN_SCORES``) for the
    generated ``tokens`` [G]; ``token_id`` turns a contrast's text into its one id (the
    tokenizer's business, so it is the caller's)."""
    if isinstance(target, str):
        target = NextToken(target)
    if not isinstance(target, NextToken):
        raise TargetError(f"a language model's target is one of {', '.join(TOKEN_SCORES)} or a "
                          f"NextToken; got {target!r}")
    if target.score not in TOKEN_SCORES:
        raise TargetError(f"the score of a generated token is one of {', '.join(TOKEN_SCORES)}; "
                          f"got {target.score!r}")
    rather_than = None
    count = int(tokens.shape[0])
    if target.rather_than is not None:
        given = target.rather_than
        if isinstance(given, torch.Tensor):
            given = given.flatten().tolist() if given.dim() else int(given)
        if isinstance(given, (str, int)):
            ids = [token_id(given)] * count
        else:
            ids = [token_id(t) for t in given]
            if len(ids) != count:
                raise TargetError(f"got {len(ids)} contrast tokens for {count} generated tokens; "
                                  "give one for all of them or one per generated token")
        check_range((min(ids), max(ids)), vocab_size)
        rather_than = torch.tensor(ids, dtype=torch.long, device=tokens.device)
    return TokenObjective(tokens, target.score, rather_than, describe(target))


# ---- what a target looks like outside this process --------------------------------------------

def describe(target: Any) -> Any:
    """The JSON-able form of a target value, for metadata, the wire and keys: "predicted", an
    index, a name, a list of them, ``{"target": ..., "rather_than": ...}`` for a contrast,
    ``{"function": "module.name"}`` for a target function, ``{"score": ..., "rather_than":
    ...}`` for a language model's next tokens."""
    if isinstance(target, NextToken):
        return {"score": target.score, "rather_than": None if target.rather_than is None
                else describe(target.rather_than)}
    if isinstance(target, Contrast):
        return {"target": describe(target.target), "rather_than": describe(target.rather_than)}
    if isinstance(target, torch.Tensor):
        return int(target) if target.dim() == 0 else [int(v) for v in target.flatten().tolist()]
    if isinstance(target, bool):
        raise TargetError("target must be a class index, not a boolean")
    if isinstance(target, (int, str)):
        return target
    if is_function(target):
        name = getattr(target, "__qualname__", None) or type(target).__qualname__
        return {"function": f"{getattr(target, '__module__', None) or '?'}.{name}"}
    if isinstance(target, Sequence):
        return [describe(t) for t in target]
    if hasattr(target, "__index__"):  # numpy integers
        return int(target)
    raise TargetError(f"target must be a class index or name, a list of them, 'predicted', a "
                      f"Contrast or a function of the logits; got {type(target).__name__}")


def to_wire(target: Any) -> Any:
    """A target for the engine service; a target function cannot leave this process."""
    if is_function(target) or (isinstance(target, Contrast) and is_function(target.target)):
        raise TargetError("a target function cannot be sent to the engine service: it runs only "
                          "in this process. Call saliency_core.attribute / explain in-process "
                          "(unset SALIENCY_ENGINE_URL), or give a class, classes or a Contrast")
    return describe(target)


def from_wire(doc: Any) -> Any:
    """The inverse of ``to_wire``."""
    if isinstance(doc, dict):
        if set(doc) != {"target", "rather_than"}:
            raise TargetError(f"a target from the wire is a class, classes or a contrast; got {doc!r}")
        return Contrast(from_wire(doc["target"]), from_wire(doc["rather_than"]))
    if isinstance(doc, list):
        return [from_wire(v) for v in doc]
    if isinstance(doc, (int, str)) and not isinstance(doc, bool):
        return doc
    raise TargetError(f"a target from the wire is a class, classes or a contrast; got {doc!r}")


def target_key(target: Any, labels: Sequence[str] | None = None) -> str:
    """A stable text key for a target value: equal values give equal keys, in any process
    (result caches, batching). With ``labels``, names become their indices, so ``"cross"`` and
    ``3`` share a key. A target function's key is its identity: valid while it lives."""
    if is_function(target):
        return f"function:{describe(target)['function']}@{id(target):x}"
    if labels is not None:
        target = _indexed(target, labels)
    return json.dumps(describe(target), sort_keys=True, separators=(",", ":"))


def _indexed(target: Any, labels: Sequence[str]) -> Any:
    if isinstance(target, Contrast):
        return Contrast(_indexed(target.target, labels), _indexed(target.rather_than, labels))
    if isinstance(target, str):
        return target if target == PREDICTED else class_index(target, labels)
    if isinstance(target, (list, tuple)):
        return [_indexed(t, labels) for t in target]
    return target


__all__ = ["NO_CLASS", "PREDICTED", "TOKEN_SCORES", "Contrast", "NextToken", "Objective", "ScoreFunction",
           "Target", "TokenObjective", "class_index", "describe", "from_wire", "resolve",
           "resolve_next_token", "target_key", "to_wire"]
