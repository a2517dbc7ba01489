"""The bundled language model ``patterns-lm``: a tiny GPT-2 trained on the planted-dependency
text of training/patterns.py, so every next-word attribution has a known right answer.

It is a real Hugging Face ``GPT2LMHeadModel`` with a real fast tokenizer, so it goes through
exactly the code path of downloaded language models (``attribute_generation``, the app's
"Next word" mode); only its size and its data are toy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from saliency_core.training import patterns

NAME = "patterns-lm"
TOKENIZER_SUFFIX = ".tokenizer.json"
SEEDS = {"train": 31, "test": 1031, "init": 41}
ARCHITECTURE: dict[str, Any] = {
    "n_layer": 2,
    "n_head": 4,
    "n_embd": 64,
    "n_positions": patterns.MAX_POSITIONS,
}


@dataclass(frozen=True)
class LMBudget:
    train_n: int = 30000
    test_n: int = 900
    steps: int = 2400
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 100
    # A model certain of every planted answer (p = 1) has a vanishing gradient of log p there:
    # gradient methods would explain it with noise. Smoothed labels keep it just short of
    # certain, as real language models are.
    label_smoothing: float = 0.1
    # Each input word is read as ``<unk>`` with this probability (its label stays the word), so
    # the model learns what a missing word means: the ``unk`` baseline of Integrated Gradients
    # is then "these words are absent", a state the model has seen, not an arbitrary vector.
    word_dropout: float = 0.1


FULL = LMBudget()
QUICK = replace(FULL, train_n=256, test_n=30, steps=5, batch_size=32, warmup=1)
# With words dropped the copy needs its 2,400 steps: at 1,200 it copied half the names (measured
# 0.50); 2,400 steps take about 90 s on two idle cores.


def build_model(vocab_size: int, tokenizer=None, architecture: dict | None = None):
    """An untrained ``GPT2LMHeadModel`` of the bundled size, or of ``architecture`` (a card's
    ``n_layer``, ``n_head``, ``n_embd``, ``n_positions``); eager attention, so every
    attribution method can take gradients through it on any device."""
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = {k: (architecture or ARCHITECTURE)[k] for k in ARCHITECTURE}
    config = GPT2Config(
        vocab_size=vocab_size, **shape, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id if tokenizer else None,
        eos_token_id=tokenizer.eos_token_id if tokenizer else None,
        pad_token_id=tokenizer.pad_token_id if tokenizer else None,
    )  # fmt: skip
    config._attn_implementation = "eager"
    return GPT2LMHeadModel(config)


def encode(
    tokenizer, examples: list[patterns.Example]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) [N, L]: each sequence then ``<eos>``, padded; padding is not
    predicted (label -100)."""
    ids = [tokenizer(e.text)["input_ids"] + [tokenizer.eos_token_id] for e in examples]
    length = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full_like(input_ids, -100)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = torch.tensor(row)
    return input_ids, labels


@torch.no_grad()
def target_accuracy(
    model, tokenizer, examples: list[patterns.Example]
) -> dict[str, float]:
    """Per kind, how often the most probable next word at the planted target is the right one."""
    hits: dict[str, list[bool]] = {kind: [] for kind in patterns.KINDS}
    input_ids, _ = encode(tokenizer, examples)
    logits = model(input_ids=input_ids).logits
    offset = len(tokenizer("")["input_ids"])  # the <bos> the tokenizer puts first
    for i, e in enumerate(examples):
        predicted = int(logits[i, offset + e.target_position - 1].argmax())
        hits[e.kind].append(predicted == tokenizer.convert_tokens_to_ids(e.target))
    return {kind: round(sum(h) / len(h), 4) for kind, h in hits.items() if h}


def model_card(model, tokenizer, budget: LMBudget, architecture: dict, quick: bool) -> dict:
    """The card of a trained model: its architecture, data, budget and measured next-word
    accuracy on the test examples."""
    test_set = patterns.generate(budget.test_n, SEEDS["test"])
    return {
        "name": NAME,
        "task": "text-generation",
        "labels": [],
        "architecture": {
            "class": "transformers.GPT2LMHeadModel",
            **architecture,
            "vocab_size": len(tokenizer),
            "attn_implementation": "eager",
            "parameters": sum(p.numel() for p in model.parameters()),
            "tokenizer": f"word level, {NAME}{TOKENIZER_SUFFIX} (tokenizers JSON)",
        },
        "data": {
            "generator": "saliency_core.training.patterns.generate",
            "kinds": list(patterns.KINDS),
            "train": {"n": budget.train_n, "seed": SEEDS["train"]},
            "test": {"n": budget.test_n, "seed": SEEDS["test"]},
        },
        "training": {
            **asdict(budget),
            "init_seed": SEEDS["init"],
            "optimizer": "AdamW, linear warm-up then cosine decay",
            "torch": torch.__version__,
        },
        "metrics": {"next_word_accuracy": target_accuracy(model, tokenizer, test_set)},
        "quick": quick,
        "created_by": f"python -m saliency_core train-bundled --only {NAME}",
    }


def drop_words(input_ids: torch.Tensor, tokenizer, rate: float,
               generator: torch.Generator) -> torch.Tensor:
    """``input_ids`` with each word (not ``<bos>``, ``<eos>`` or padding) replaced by ``<unk>``
    with probability ``rate``."""
    if rate <= 0:
        return input_ids
    structural = torch.tensor([tokenizer.bos_token_id, tokenizer.eos_token_id,
                               tokenizer.pad_token_id])  # fmt: skip
    hit = torch.rand(input_ids.shape, generator=generator) < rate
    hit &= ~torch.isin(input_ids, structural)
    return torch.where(hit, torch.full_like(input_ids, tokenizer.unk_token_id), input_ids)


def train(quick: bool, log: Callable[[str], None], budget: LMBudget | None = None,
          architecture: dict | None = None) -> tuple[dict, dict, Any]:
    """(state dict, card, tokenizer) of a freshly trained model (the bundled budget and
    architecture unless given)."""
    budget = budget or (QUICK if quick else FULL)
    architecture = {**ARCHITECTURE, **(architecture or {})}
    tokenizer = patterns.build_tokenizer()
    train_set = patterns.generate(budget.train_n, SEEDS["train"])
    input_ids, labels = encode(tokenizer, train_set)

    torch.manual_seed(SEEDS["init"])
    model = build_model(len(tokenizer), tokenizer, architecture)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr,
                                  weight_decay=budget.weight_decay)  # fmt: skip

    def schedule(step: int) -> float:
        if step < budget.warmup:
            return (step + 1) / budget.warmup
        done = (step - budget.warmup) / max(1, budget.steps - budget.warmup)
        return 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(SEEDS["init"])
    model.train()
    for step in range(budget.steps):
        index = torch.randint(len(input_ids), (budget.batch_size,), generator=generator)
        inputs = drop_words(input_ids[index], tokenizer, budget.word_dropout, generator)
        logits = model(input_ids=inputs).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels[index][:, 1:].reshape(-1),
            ignore_index=-100,
            label_smoothing=budget.label_smoothing,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if (step + 1) % max(1, budget.steps // 5) == 0:
            log(f"  step {step + 1}/{budget.steps}: loss {loss.item():.3f}")
    model.eval()

    card = model_card(model, tokenizer, budget, architecture, quick)
    # GPT-2 ties the output layer to the input embedding: one stored copy is enough.
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    return state, card, tokenizer
