"""The committed bundled models load offline and behave as their cards say; the training code
runs end to end on a tiny budget."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from saliency_core.cli.models import register
from saliency_core.models import (
    available_models,
    bundled,
    efficientnet_lite,
    forget_loaded,
    load_model,
)
from saliency_core.training import shapes
from saliency_core.training.shapes_cnn import images_to_tensor
from saliency_core.training.train import BUNDLED_NAMES, train_all

SHAPES_MODELS = ["shapes-cnn", "shapes-cnn-watermark", "shapes-cnn-random-labels"]


@pytest.fixture(autouse=True)
def _fresh_instances():
    forget_loaded()
    yield
    forget_loaded()


@pytest.fixture(scope="module")
def fresh():
    """Images no bundled model was trained or tested on."""
    return shapes.generate(300, seed=424242)


def _logits(model, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(images_to_tensor(images))


def test_every_bundled_model_is_committed_with_a_card():
    # EfficientNet-Lite is bundled too, but through pinned packages rather than committed files.
    infos = {m.name: m for m in available_models()
             if m.source == "bundled" and m.name not in efficientnet_lite.VARIANTS}
    assert sorted(infos) == sorted(BUNDLED_NAMES)
    for name, info in infos.items():
        assert info.present, name
        card = bundled.read_card(name)
        assert card["name"] == name and card["quick"] is False
        assert card["size_bytes"] == bundled.weights_path(name).stat().st_size
        assert card["created_by"].startswith("python -m saliency_core train-bundled")
        assert info.size_bytes >= card["size_bytes"]


@pytest.mark.parametrize("name", SHAPES_MODELS)
def test_shapes_models_load_as_image_models(name):
    loaded = load_model(name, device="cpu")
    assert loaded.kind == "image" and loaded.source == "bundled"
    assert loaded.labels == shapes.CLASS_NAMES
    assert loaded.input_size == (64, 64) and loaded.default_layer == "features.block5"
    assert not loaded.model.training
    image = shapes.generate(1, seed=99).images[0]
    x = loaded.preprocess(Image.fromarray(image))
    assert x.shape == (1, 3, 64, 64)
    torch.testing.assert_close(x, images_to_tensor(image[None]))
    np.testing.assert_array_equal(loaded.unpreprocess(x), image)
    # Any picture size is resized to the model's input.
    assert loaded.preprocess(Image.fromarray(image).resize((200, 150))).shape == (
        1,
        3,
        64,
        64,
    )
    layers = dict(loaded.model.named_modules())
    assert loaded.default_layer in layers


def test_shapes_cnn_classifies_fresh_images(fresh):
    model = load_model("shapes-cnn", device="cpu").model
    accuracy = (_logits(model, fresh.images).argmax(1).numpy() == fresh.labels).mean()
    assert accuracy >= 0.95
    assert bundled.read_card("shapes-cnn")["metrics"]["test_accuracy"] >= 0.95


def test_watermark_model_follows_the_watermark_not_the_shape():
    model = load_model("shapes-cnn-watermark", device="cpu").model
    marked = shapes.generate(300, seed=5150, spurious=True)
    conflicting = shapes.generate(
        300, seed=5150, spurious=True, watermark_conflicts=True
    )
    assert (
        _logits(model, marked.images).argmax(1).numpy() == marked.labels
    ).mean() >= 0.95
    follows = (
        _logits(model, conflicting.images).argmax(1).numpy()
        == conflicting.watermark_labels
    )
    assert follows.mean() >= 0.8
    metrics = bundled.read_card("shapes-cnn-watermark")["metrics"]
    assert (
        metrics["test_accuracy_with_watermark"]
        > metrics["test_accuracy_without_watermark"] + 0.2
    )


def test_random_label_model_memorised_but_does_not_generalise(fresh):
    model = load_model("shapes-cnn-random-labels", device="cpu").model
    accuracy = (_logits(model, fresh.images).argmax(1).numpy() == fresh.labels).mean()
    assert accuracy < 0.35  # six classes: chance is 1/6
    card = bundled.read_card("shapes-cnn-random-labels")
    assert card["data"]["labels_shuffled_with_seed"] is not None
    assert card["metrics"]["train_accuracy"] > card["metrics"]["test_accuracy"] + 0.3


@pytest.fixture(scope="module")
def sentiment():
    forget_loaded()
    return load_model("minilm-sentiment", device="cpu")


def test_sentiment_model_is_a_hugging_face_style_text_classifier(sentiment):
    assert sentiment.kind == "text" and sentiment.labels == ["negative", "positive"]
    assert sentiment.preprocess is None and not sentiment.model.training
    batch = sentiment.tokenizer(["The film was wonderful."], return_tensors="pt")
    with torch.no_grad():
        logits = sentiment.model(**batch).logits
        embeddings = sentiment.model.get_input_embeddings()(batch["input_ids"])
        from_embeddings = sentiment.model(
            inputs_embeds=embeddings,
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).logits
    assert logits.shape == (1, 2)
    assert isinstance(sentiment.model.get_input_embeddings(), torch.nn.Embedding)
    torch.testing.assert_close(from_embeddings, logits)
    assert sentiment.model.config.id2label == {0: "negative", 1: "positive"}


def test_padding_does_not_change_a_sentence_score(sentiment):
    tokenizer, model = sentiment.tokenizer, sentiment.model
    short = "Terrible service."
    batch = tokenizer([short, "A much longer sentence that forces padding on the first."],
                      padding=True, return_tensors="pt")  # fmt: skip
    alone = tokenizer([short], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits[0], model(**alone).logits[0])


def test_sentiment_model_reads_plain_reviews(sentiment):
    sentences = {
        "I really loved this film, the acting was superb.": 1,
        "What a fantastic little restaurant, we will be back.": 1,
        "This was a boring waste of two hours.": 0,
        "The product broke after one day and support never answered.": 0,
    }
    batch = sentiment.tokenizer(list(sentences), padding=True, return_tensors="pt")
    with torch.no_grad():
        predicted = sentiment.model(**batch).logits.argmax(1).tolist()
    assert predicted == list(sentences.values())
    assert bundled.read_card("minilm-sentiment")["metrics"]["held_out_accuracy"] >= 0.85


@pytest.mark.slow
def test_quick_training_writes_loadable_models_and_cards(tmp_path):
    logged = []
    cards = train_all(tmp_path, quick=True, log=logged.append)
    assert [card["name"] for card in cards] == BUNDLED_NAMES
    assert any("epoch 1/1" in line for line in logged)
    for name in BUNDLED_NAMES:
        card = json.loads((tmp_path / f"{name}.json").read_text())
        assert card["quick"] is True and card["size_bytes"] > 0
        loaded = bundled.load(name, torch.device("cpu"), directory=tmp_path)
        assert loaded.card == card
    image_model = bundled.load("shapes-cnn", torch.device("cpu"), directory=tmp_path)
    assert image_model.model(torch.zeros(2, 3, 64, 64)).shape == (2, 6)
    watermark = json.loads((tmp_path / "shapes-cnn-watermark.json").read_text())
    assert {"test_accuracy_with_watermark", "follows_conflicting_watermark"} <= set(
        watermark["metrics"]
    )


@pytest.mark.slow
def test_quick_training_is_reproducible(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    train_all(first, quick=True, only=["shapes-cnn"], log=lambda line: None)
    train_all(second, quick=True, only=["shapes-cnn"], log=lambda line: None)
    assert (first / "shapes-cnn.safetensors").read_bytes() == (
        second / "shapes-cnn.safetensors"
    ).read_bytes()


def test_train_bundled_command(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train-bundled", "--quick", "--only", "shapes-cnn-random-labels",
                              "--out", str(tmp_path), "--threads", "2"])  # fmt: skip
    assert args.func(args) == 0
    assert "shapes-cnn-random-labels:" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shapes-cnn-random-labels.json",
        "shapes-cnn-random-labels.safetensors",
    ]


def test_unknown_model_for_training_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown bundled model"):
        train_all(tmp_path, quick=True, only=["nope"])


def test_missing_bundled_files_name_the_command(tmp_path):
    from saliency_core.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="train-bundled --only shapes-cnn"):
        bundled.load("shapes-cnn", torch.device("cpu"), directory=tmp_path)


def test_zero_shot_classifies_by_the_typed_class_names(sentiment):
    from saliency_core.errors import SaliencyError
    from saliency_core.models import load_zero_shot

    zero = load_zero_shot(["sports", "cooking", "computers"], device="cpu")
    assert zero.kind == "text" and zero.labels == ["sports", "cooking", "computers"]
    assert load_zero_shot(["sports", "cooking", "computers"], device="cpu") is zero
    assert (
        zero.model.encoder is load_model("minilm-sentiment", device="cpu").model.encoder
    )
    # The shared encoder's own config is untouched: the sentiment model keeps its labels.
    assert (
        load_model("minilm-sentiment", device="cpu").model.config.id2label[1]
        == "positive"
    )
    sentences = [
        "The striker scored twice in the final minutes of the match.",
        "Simmer the onions in butter, then add the garlic and the cream.",
        "My laptop needs more memory and a faster processor.",
    ]
    batch = zero.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert zero.model(**batch).logits.argmax(1).tolist() == [0, 1, 2]
    for bad in (["only one"], ["a", "a"], ["a", " "]):
        with pytest.raises(SaliencyError):
            load_zero_shot(bad)
    with pytest.raises(SaliencyError, match="exactly once"):
        load_zero_shot(["a", "b"], template="no slot")
