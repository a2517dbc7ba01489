"""Hugging Face sequence classifiers: the zoo's text models and allow-listed local folders.

Loading is always ``local_files_only=True`` (and never runs code shipped with a model), so a
missing model fails at once with a message naming the fetch command instead of waiting on a
network that may not exist. ``fetch`` is the only path that downloads, from huggingface.co or the
mirror named by HF_ENDPOINT.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saliency_core.errors import ModelUnavailableError, SaliencyError
from saliency_core.models import deployment_source
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.cache import (
    NewFolders,
    fetch_command,
    hf_hub_dir,
    is_network_failure,
    relative_to_cache,
    unreachable_message,
)
from saliency_core.models.source import FixedCatalogue


@dataclass(frozen=True)
class HubTextModel:
    name: str  # what users type; the repository id where it is unambiguous
    repo_id: str
    description: str
    # For checkpoints whose config only says LABEL_0, LABEL_1...
    labels: tuple[str, ...] | None = None


HUB_MODELS = {
    spec.name: spec
    for spec in [
        HubTextModel(
            "distilbert-base-uncased-finetuned-sst-2-english",
            "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
            "DistilBERT fine-tuned on SST-2 movie review sentiment (negative/positive)",
        ),
        HubTextModel(
            "textattack/bert-base-uncased-SST-2",
            "textattack/bert-base-uncased-SST-2",
            "BERT-base fine-tuned on SST-2 by TextAttack (negative/positive)",
            labels=("negative", "positive"),
        ),
        HubTextModel(
            "cardiffnlp/twitter-roberta-base-sentiment-latest",
            "cardiffnlp/twitter-roberta-base-sentiment-latest",
            "RoBERTa-base trained on tweets, 3-way sentiment (negative/neutral/positive)",
        ),
    ]
}


def repo_cache_dir(repo_id: str) -> Path:
    return hf_hub_dir() / ("models--" + repo_id.replace("/", "--"))


def snapshot_dir(repo_id: str) -> Path | None:
    """The cached snapshot that ``main`` points to, if it holds a config."""
    repo_dir = repo_cache_dir(repo_id)
    ref = repo_dir / "refs" / "main"
    candidates = []
    if ref.is_file():
        candidates.append(repo_dir / "snapshots" / ref.read_text().strip())
    candidates += (
        sorted((repo_dir / "snapshots").glob("*"))
        if (repo_dir / "snapshots").is_dir()
        else []
    )
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate
    return None


def is_present(spec: HubTextModel) -> bool:
    return snapshot_dir(spec.repo_id) is not None


def cached_bytes(repo_id: str) -> int:
    """Bytes of ``repo_id`` in the cache (0 when absent): its blobs, or the snapshot itself
    where there is no blob store (copies instead of links)."""
    repo_dir = repo_cache_dir(repo_id)
    files = [p for p in (repo_dir / "blobs").glob("*") if p.is_file()]
    if not files and (snapshot := snapshot_dir(repo_id)) is not None:
        files = [p for p in snapshot.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def size_bytes(spec: HubTextModel) -> int | None:
    return cached_bytes(spec.repo_id) or None


def one_copy_of_weights(files: list[str], needed: re.Pattern[str]) -> list[str]:
    """The files to fetch: the weights once (safetensors when there are any, else the
    PyTorch .bin) and the others ``needed`` matches."""
    weights = ([f for f in files if f.endswith(".safetensors")]
               or [f for f in files if f == "pytorch_model.bin"])
    return [*weights, *(f for f in files if needed.match(f))]


def labels_from_config(config, override: tuple[str, ...] | None = None) -> list[str]:
    count = int(config.num_labels)
    if override is not None and len(override) == count:
        return list(override)
    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(count)]


def text_loaded_model(
    name: str, model, tokenizer, labels: list[str], source: str, card: dict
) -> LoadedModel:
    return LoadedModel(
        name=name,
        task="text",
        model=model.eval(),
        labels=labels,
        tokenizer=tokenizer,
        source=source,
        card=card,
    )


def load_classifier(location: str | Path, cache_dir: Path | None, device: torch.device):
    """(model, tokenizer) from a hub id in ``cache_dir`` or from a folder, offline only."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    model = AutoModelForSequenceClassification.from_pretrained(str(location), **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(location), **kwargs)
    return model.to(device).eval(), tokenizer


def load(name: str, device: torch.device) -> LoadedModel:
    spec = HUB_MODELS[name]
    if not is_present(spec):
        raise ModelUnavailableError(
            f"{name} is not in the local cache ({repo_cache_dir(spec.repo_id)}). On a machine "
            f"with internet access run: {fetch_command(name)}"
        )
    try:
        model, tokenizer = load_classifier(spec.repo_id, hf_hub_dir(), device)
    # Partial download: config present, weights or tokenizer missing.
    except OSError as exc:
        raise ModelUnavailableError(
            f"{name} is only partly in the local cache ({first_line(exc)}). Run: "
            f"{fetch_command(name)}"
        ) from exc
    labels = labels_from_config(model.config, spec.labels)
    card = {"repo_id": spec.repo_id, "description": spec.description}
    return text_loaded_model(name, model, tokenizer, labels, "zoo", card)


def load_folder(name: str, folder: Path, device: torch.device) -> LoadedModel:
    try:
        model, tokenizer = load_classifier(folder, None, device)
    except (OSError, ValueError, KeyError) as exc:
        raise SaliencyError(
            f"{folder} is not a usable Hugging Face text classifier folder: {first_line(exc)}"
        ) from exc
    labels = labels_from_config(model.config)
    card = {
        "folder": str(folder),
        "architecture": list(model.config.architectures or []),
    }
    return text_loaded_model(name, model, tokenizer, labels, "uploaded", card)


# What a sequence classifier needs from its repository: the config, the tokenizer's files
# and one copy of the weights (safetensors when there are any, else the PyTorch .bin).
_NEEDED = re.compile(r"^(config\.json|tokenizer.*|vocab\..*|merges\.txt|special_tokens_map\.json"
                     r"|added_tokens\.json|spiece\.model|sentencepiece\.bpe\.model)$")


def hub_endpoint() -> str:
    """The hub to fetch from: HF_ENDPOINT (an organisation's mirror) or huggingface.co; read at
    each fetch, not when huggingface_hub was imported."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or "https://huggingface.co"


def fetch(name: str) -> Path:
    """Model, tokenizer and config (one copy of the weights: safetensors when there are any,
    else the PyTorch .bin) into the cache."""

    return download_snapshot(name, HUB_MODELS[name].repo_id,
                             lambda files: one_copy_of_weights(files, _NEEDED))


def download_snapshot(name: str, repo_id: str, wanted) -> Path:
    """The files ``wanted(list of the repository's files)`` picks, into the cache with
    huggingface_hub's downloader, which writes each file to an .incomplete blob, resumes it
    after a dropped connection, checks its size against the hub's and moves it into place
    only when complete. Its progress bars show on the terminal (the Models page measures the
    files as they grow). Failures become one ModelUnavailableError saying what to do."""
    from huggingface_hub import HfApi, snapshot_download

    endpoint = hub_endpoint()
    folders = NewFolders(hf_hub_dir())
    try:
        files = [s.rfilename for s in HfApi(endpoint=endpoint).model_info(repo_id).siblings or []]
        snapshot_download(repo_id, cache_dir=str(hf_hub_dir()), endpoint=endpoint,
                          allow_patterns=wanted(files))
    except Exception as exc:
        folders.discard()
        if is_network_failure(exc):
            raise ModelUnavailableError(unreachable_message(
                name, endpoint, "HF_ENDPOINT", relative_to_cache(repo_cache_dir(repo_id)))) from exc
        raise ModelUnavailableError(
            f"{name}: the download from {endpoint} failed ({exc.__class__.__name__}: "
            f"{first_line(exc)}); run the fetch again to resume it."
        ) from exc
    return repo_cache_dir(repo_id)


def first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return re.sub(r"\s+", " ", text[0])[:300] if text else exc.__class__.__name__


class HubTextSource(FixedCatalogue):
    """The zoo's Hugging Face text classifiers (models/source.py), fetched into the cache.
    (Allow-listed local folders of the same kind are bring-your-own models: uploaded.py.)"""

    downloads = True
    catalogue = HUB_MODELS

    def _paths(self, name: str) -> list[Path]:
        return [repo_cache_dir(HUB_MODELS[name].repo_id)]

    def info(self, name: str) -> ModelInfo:
        spec = HUB_MODELS[name]
        present = is_present(spec) or deployment_source.in_source(lambda: self._paths(name))
        return ModelInfo(name, "text", "zoo", present, size_bytes(spec),
                         f"{spec.description} (Hugging Face)")

    def load(self, name: str, device: torch.device) -> LoadedModel:
        deployment_source.ensure_local(lambda: self._paths(name),
                                       lambda: is_present(HUB_MODELS[name]))
        return load(name, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return None

    def fetch(self, name: str, progress: bool = True) -> Path:
        return fetch(name)


SOURCE = HubTextSource()
