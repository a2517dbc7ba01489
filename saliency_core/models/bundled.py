"""Loaders for the models that ship with the project (package data in ``saliency_core/weights``).

Each model is ``<name>.safetensors`` plus a JSON card ``<name>.json`` written by
``python -m saliency_core train-bundled`` (saliency_core/bundled/train.py); the card holds the
architecture parameters needed to rebuild the module, so loading needs nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from saliency_core.errors import ModelUnavailableError
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.cache import BUNDLED_DIR
from saliency_core.models.source import FixedCatalogue


@dataclass(frozen=True)
class BundledModel:
    name: str
    task: str
    description: str


BUNDLED_MODELS = {
    spec.name: spec
    for spec in [
        BundledModel(
            "shapes-cnn",
            "image",
            "Small CNN classifying procedural shapes; masks give ground truth",
        ),
        BundledModel(
            "shapes-cnn-watermark",
            "image",
            "Same CNN trained where a corner watermark always gives away the class (a shortcut)",
        ),
        BundledModel(
            "shapes-cnn-random-labels",
            "image",
            "Same CNN trained on shuffled labels, for the data randomization sanity test",
        ),
        BundledModel(
            "shapes-vit",
            "image",
            "Small vision transformer (Hugging Face ViT, 8 px patches) on the same shapes: "
            "attention rollout and relevance are measured against the masks",
        ),
        BundledModel(
            "minilm-sentiment",
            "text",
            "all-MiniLM-L6-v2 encoder with a sentiment head trained on review sentences",
        ),
        BundledModel(
            "patterns-lm",
            "text-generation",
            "Tiny GPT-2 trained on text with planted dependencies (copied names, agreement, "
            "brackets): each next word's deciding token is known",
        ),
    ]
}


def weights_path(name: str, directory: Path | None = None) -> Path:
    return (directory or BUNDLED_DIR) / f"{name}.safetensors"


def card_path(name: str, directory: Path | None = None) -> Path:
    return (directory or BUNDLED_DIR) / f"{name}.json"


def tokenizer_path(name: str, directory: Path | None = None) -> Path:
    """A language model's tokenizer (the tokenizers library's JSON, as in a Hugging Face
    checkpoint's tokenizer.json)."""
    from saliency_core.training.patterns_lm import TOKENIZER_SUFFIX

    return (directory or BUNDLED_DIR) / f"{name}{TOKENIZER_SUFFIX}"


def is_present(name: str, directory: Path | None = None) -> bool:
    files = [weights_path(name, directory), card_path(name, directory)]
    if BUNDLED_MODELS[name].task == "text-generation":
        files.append(tokenizer_path(name, directory))
    return all(path.is_file() for path in files)


def size_bytes(name: str, directory: Path | None = None) -> int | None:
    path = weights_path(name, directory)
    if not path.is_file():
        return None
    size = path.stat().st_size
    if BUNDLED_MODELS[name].task == "text":  # the encoder is part of what runs
        from saliency_core.training.minilm import encoder_dir

        try:
            size += (encoder_dir() / "model.safetensors").stat().st_size
        except (ModelUnavailableError, OSError):
            pass
    return size


def read_card(name: str, directory: Path | None = None) -> dict:
    return json.loads(card_path(name, directory).read_text())


def load(name: str, device: torch.device, directory: Path | None = None) -> LoadedModel:
    if not is_present(name, directory):
        raise ModelUnavailableError(
            f"The bundled model {name} is missing from {directory or BUNDLED_DIR} (its "
            f".safetensors and .json are package data of saliency_core). Regenerate it with: "
            f"python -m saliency_core train-bundled --only {name}"
        )
    card = read_card(name, directory)
    state = load_file(str(weights_path(name, directory)))
    if BUNDLED_MODELS[name].task == "text":
        return _load_sentiment(name, card, state, device)
    if BUNDLED_MODELS[name].task == "text-generation":
        return _load_language_model(name, card, state, device, directory)
    if name == "shapes-vit":
        return _load_shapes_vit(name, card, state, device)
    return _load_shapes_cnn(name, card, state, device)


def _load_shapes_cnn(
    name: str, card: dict, state: dict, device: torch.device
) -> LoadedModel:
    from saliency_core.training.shapes_cnn import ShapesCNN

    arch = card["architecture"]
    labels = list(card["labels"])
    model = ShapesCNN(num_classes=len(labels), widths=tuple(arch["widths"]))
    model.load_state_dict(state)
    return _shapes_loaded(name, card, model.to(device).eval(), device)


def _load_shapes_vit(
    name: str, card: dict, state: dict, device: torch.device
) -> LoadedModel:
    from saliency_core.training.shapes_vit import build

    model = build(card["architecture"]["config"], list(card["labels"]))
    model.load_state_dict(state)
    return _shapes_loaded(name, card, model.to(device).eval(), device)


def _shapes_loaded(
    name: str, card: dict, model: torch.nn.Module, device: torch.device
) -> LoadedModel:
    """A shapes model with the preprocessing its card records (64 px, fixed mean and std)."""
    from PIL import Image

    arch = card["architecture"]
    labels = list(card["labels"])
    height, width = card["data"]["image_size"], card["data"]["image_size"]
    mean, std = list(arch["normalization"]["mean"]), list(arch["normalization"]["std"])
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)

    def preprocess(image) -> torch.Tensor:
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        x = pixels.permute(2, 0, 1).unsqueeze(0)
        return ((x - mean_t) / std_t).to(device)

    return LoadedModel(
        name=name,
        task="image",
        model=model,
        labels=labels,
        preprocess=preprocess,
        normalization=(mean, std),
        input_size=(height, width),
        default_layer=arch["default_layer"],
        source="bundled",
        card=card,
    )


def _load_sentiment(
    name: str, card: dict, state: dict, device: torch.device
) -> LoadedModel:
    from saliency_core.training.minilm import MeanPooledClassifier, load_encoder

    encoder, tokenizer = load_encoder()
    labels = list(card["labels"])
    model = MeanPooledClassifier(encoder, labels)
    model.head.load_state_dict(
        {key.removeprefix("head."): value for key, value in state.items()}
    )
    return LoadedModel(
        name=name,
        task="text",
        model=model.to(device).eval(),
        labels=labels,
        tokenizer=tokenizer,
        source="bundled",
        card=card,
    )


def _load_language_model(name: str, card: dict, state: dict, device: torch.device,
                         directory: Path | None) -> LoadedModel:
    from transformers import PreTrainedTokenizerFast

    from saliency_core.training.patterns import SPECIAL_ROLES
    from saliency_core.training.patterns_lm import build_model

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_path(name, directory)), **SPECIAL_ROLES,
        model_max_length=card["architecture"]["n_positions"],
    )  # fmt: skip
    model = build_model(card["architecture"]["vocab_size"], tokenizer, card["architecture"])
    # The output layer is tied to the input embedding, which is the stored copy.
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ModelUnavailableError(
            f"The bundled model {name}'s weights do not fit its card (missing {missing}, "
            f"unexpected {unexpected}); regenerate it with: "
            f"python -m saliency_core train-bundled --only {name}"
        )
    model.tie_weights()
    return LoadedModel(
        name=name,
        task="text-generation",
        model=model.to(device).eval(),
        labels=[],
        tokenizer=tokenizer,
        source="bundled",
        card=card,
    )


class BundledSource(FixedCatalogue):
    """The models that ship with the project (models/source.py): always listed first, since
    they work offline."""

    downloads = False
    catalogue = BUNDLED_MODELS

    def info(self, name: str) -> ModelInfo:
        spec = BUNDLED_MODELS[name]
        return ModelInfo(spec.name, spec.task, "bundled", is_present(name), size_bytes(name),
                         spec.description)

    def load(self, name: str, device: torch.device) -> LoadedModel:
        return load(name, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return "bundled with the project"

    def fetch(self, name: str, progress: bool = True) -> Path:
        return weights_path(name)


SOURCE = BundledSource()
