"""Hugging Face text classifiers: the zoo's loading code on a tiny model the tests save into a
temporary cache (in the hub's own layout), and allow-listed model folders on the server."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from saliency_core.errors import ModelUnavailableError, SaliencyError
from saliency_core.models import (
    available_models,
    hf_text,
    load_hf_folder,
    load_model,
)

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "movie",
    "was",
    "good",
    "bad",
    ".",
]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


pytestmark = pytest.mark.usefixtures("temp_cache")  # tests/conftest.py


def save_tiny_classifier(folder, id2label=None, seed=0):
    """A 1-layer BERT classifier and its tokenizer, written with save_pretrained."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        num_labels=2, id2label=id2label)  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)}).save_pretrained(
        folder
    )
    return model


def save_into_hub_cache(repo_id, **kwargs):
    """What the hub's downloader leaves: refs/main naming a snapshot folder with the files."""
    repo_dir = hf_text.repo_cache_dir(repo_id)
    model = save_tiny_classifier(repo_dir / "snapshots" / COMMIT, **kwargs)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return model


def logits(loaded, text="the movie was good ."):
    batch = loaded.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(**batch).logits, batch


def test_zoo_text_model_loads_offline_from_the_cache():
    name = "textattack/bert-base-uncased-SST-2"
    reference = save_into_hub_cache(name)
    info = {m.name: m for m in available_models()}[name]
    assert (
        info.present
        and info.task == "text"
        and info.source == "zoo"
        and info.size_bytes > 0
    )

    loaded = load_model(name, device="cpu")
    assert (
        loaded.kind == "text" and loaded.source == "zoo" and not loaded.model.training
    )
    # The checkpoint only says LABEL_0/LABEL_1; the zoo knows what SST-2's classes are.
    assert loaded.labels == ["negative", "positive"]
    out, batch = logits(loaded)
    assert loaded.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])[1:3] == [
        "the",
        "movie",
    ]
    with torch.no_grad():
        torch.testing.assert_close(out, reference(**batch).logits)
    assert loaded.model.get_input_embeddings().num_embeddings == len(VOCAB)


def test_labels_come_from_the_config():
    name = "cardiffnlp/twitter-roberta-base-sentiment-latest"
    save_into_hub_cache(name, id2label={0: "sad", 1: "happy"})
    assert load_model(name, device="cpu").labels == ["sad", "happy"]


def test_missing_model_names_the_fetch_command():
    name = "distilbert-base-uncased-finetuned-sst-2-english"
    assert not {m.name: m for m in available_models()}[name].present
    with pytest.raises(
        ModelUnavailableError, match=f"python -m saliency_core fetch {name}"
    ):
        load_model(name, device="cpu")


def test_partial_download_is_reported_with_the_fetch_command():
    name = "distilbert-base-uncased-finetuned-sst-2-english"
    save_into_hub_cache(hf_text.HUB_MODELS[name].repo_id)
    snapshot = (
        hf_text.repo_cache_dir(hf_text.HUB_MODELS[name].repo_id) / "snapshots" / COMMIT
    )
    (snapshot / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="partly in the local cache.*fetch"):
        load_model(name, device="cpu")


# ------------------------------------------------------------------- allow-listed folders


def test_allow_listed_folders_are_listed_and_load(tmp_path, monkeypatch):
    root = tmp_path / "models"
    reference = save_tiny_classifier(root / "reviews", id2label={0: "bad", 1: "good"})
    single = tmp_path / "elsewhere" / "single"
    save_tiny_classifier(single, seed=1)
    (root / "not-a-model").mkdir()
    monkeypatch.setenv("SALIENCY_HF_ALLOWLIST", f"{root},{single}")

    infos = {m.name: m for m in available_models() if m.source == "uploaded"}
    assert {"folder:reviews", "folder:single"} <= set(infos)
    assert "folder:not-a-model" not in infos
    assert (
        infos["folder:reviews"].task == "text"
        and infos["folder:reviews"].size_bytes > 0
    )

    loaded = load_hf_folder(root / "reviews", device="cpu")
    assert loaded.name == "folder:reviews" and loaded.source == "uploaded"
    assert loaded.labels == ["bad", "good"]
    out, batch = logits(loaded)
    with torch.no_grad():
        torch.testing.assert_close(out, reference(**batch).logits)
    assert load_model("folder:reviews", device="cpu") is loaded
    assert load_hf_folder(single, device="cpu").name == "folder:single"


def test_folders_outside_the_allow_list_are_refused(tmp_path, monkeypatch):
    save_tiny_classifier(tmp_path / "secret")
    with pytest.raises(SaliencyError, match="switched off"):
        load_hf_folder(tmp_path / "secret")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("SALIENCY_HF_ALLOWLIST", str(allowed))
    for attempt in (tmp_path / "secret", allowed / ".." / "secret"):
        with pytest.raises(SaliencyError, match="not an allowed model folder"):
            load_hf_folder(attempt)


def test_a_broken_allow_listed_folder_gets_a_clear_message(tmp_path, monkeypatch):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    monkeypatch.setenv("SALIENCY_HF_ALLOWLIST", str(folder))
    with pytest.raises(
        SaliencyError, match="not a usable Hugging Face text classifier folder"
    ):
        load_hf_folder(folder, device="cpu")
