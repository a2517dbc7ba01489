"""Hugging Face causal language models: the zoo's text-generation models (task
"text-generation", Hugging Face's name for it), explained by ``attribute_generation``.

They come the way the zoo's text classifiers do (hf_text.py): ``fetch`` downloads the
config, the tokenizer's files, the chat template and one copy of the weights from
huggingface.co or the mirror named by HF_ENDPOINT into the cache; loading is always
``local_files_only=True`` and never runs code shipped with a model, so a missing model fails
at once with a message naming the fetch command. Models are loaded with eager attention: its
backward has a batching rule for every operator, so the generated tokens' backward passes run
as one batched pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saliency_core.errors import ModelUnavailableError
from saliency_core.models import deployment_source
from saliency_core.models.base import LoadedModel, ModelInfo
from saliency_core.models.cache import fetch_command, hf_hub_dir
from saliency_core.models.hf_text import (
    cached_bytes,
    download_snapshot,
    first_line,
    one_copy_of_weights,
    repo_cache_dir,
    snapshot_dir,
)
from saliency_core.models.source import FixedCatalogue

TASK = "text-generation"


@dataclass(frozen=True)
class HubLanguageModel:
    name: str  # what users type
    repo_id: str
    description: str
    download_bytes: int  # the safetensors weights, about what a fetch downloads
    chat: bool = False  # instruction-tuned: its tokenizer has a chat template


LANGUAGE_MODELS = {
    spec.name: spec
    for spec in [
        HubLanguageModel("distilgpt2", "distilbert/distilgpt2",
                         "DistilGPT2: 82M parameters, 6 layers, GPT-2's tokenizer", 352_824_413),
        HubLanguageModel("gpt2", "openai-community/gpt2",
                         "GPT-2 small: 124M parameters, 12 layers (OpenAI, 2019)", 548_105_171),
        HubLanguageModel("SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M",
                         "SmolLM2 135M: a Llama-architecture base model (Hugging Face, 2024)",
                         269_060_552),
        HubLanguageModel("SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct",
                         "SmolLM2 135M tuned to follow chat instructions (chat template)",
                         269_060_552, chat=True),
        HubLanguageModel("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B",
                         "Qwen2.5 0.5B: a base model with a 151k-token vocabulary (Alibaba, 2024)",
                         988_097_824),
        HubLanguageModel("Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct",
                         "Qwen2.5 0.5B tuned to follow chat instructions (chat template)",
                         988_097_824, chat=True),
    ]
}

# What a causal LM needs from its repository besides one copy of the weights: the configs,
# the tokenizer's files and the chat template (transformers 5 keeps it in its own file).
_NEEDED = re.compile(r"^(config\.json|generation_config\.json|tokenizer.*|vocab\..*|merges\.txt"
                     r"|special_tokens_map\.json|added_tokens\.json|chat_template\.(jinja|json)"
                     r"|spiece\.model|tokenizer\.model)$")


def is_present(spec: HubLanguageModel) -> bool:
    return snapshot_dir(spec.repo_id) is not None


def size_bytes(spec: HubLanguageModel) -> int:
    """Bytes in the cache when fetched, else the expected download."""
    return cached_bytes(spec.repo_id) or spec.download_bytes


def load_causal_lm(location: str | Path, cache_dir: Path | None, device: torch.device):
    """(model, tokenizer) from a hub id in ``cache_dir`` or from a folder, offline only, with
    eager attention, in evaluation mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(str(location), attn_implementation="eager",  # nosec B615 - local_files_only
                                                      dtype=torch.float32, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(location), **kwargs)  # nosec B615 - local_files_only
    return model.to(device).eval(), tokenizer


def load(name: str, device: torch.device) -> LoadedModel:
    spec = LANGUAGE_MODELS[name]
    if not is_present(spec):
        raise ModelUnavailableError(
            f"{name} is not in the local cache ({repo_cache_dir(spec.repo_id)}). On a machine "
            f"with internet access run: {fetch_command(name)} (or make fetch MODELS={name})"
        )
    try:
        model, tokenizer = load_causal_lm(spec.repo_id, hf_hub_dir(), device)
    except OSError as exc:  # partial download: config present, weights or tokenizer missing
        raise ModelUnavailableError(
            f"{name} is only partly in the local cache ({first_line(exc)}). Run: {fetch_command(name)}"
        ) from exc
    card = {"repo_id": spec.repo_id, "description": spec.description, "chat": spec.chat}
    return LoadedModel(name=name, task=TASK, model=model, labels=[], tokenizer=tokenizer,
                       source="zoo", card=card)


def fetch(name: str) -> Path:
    """Config, tokenizer, chat template and the safetensors weights into the cache."""

    return download_snapshot(name, LANGUAGE_MODELS[name].repo_id,
                             lambda files: one_copy_of_weights(files, _NEEDED))


class HubLanguageModelSource(FixedCatalogue):
    """The zoo's causal language models (models/source.py), fetched into the cache."""

    downloads = True
    catalogue = LANGUAGE_MODELS

    def _paths(self, name: str) -> list[Path]:
        return [repo_cache_dir(LANGUAGE_MODELS[name].repo_id)]

    def info(self, name: str) -> ModelInfo:
        spec = LANGUAGE_MODELS[name]
        present = is_present(spec) or deployment_source.in_source(lambda: self._paths(name))
        return ModelInfo(name, TASK, "zoo", present, size_bytes(spec),
                         f"{spec.description} (Hugging Face)")

    def load(self, name: str, device: torch.device) -> LoadedModel:
        deployment_source.ensure_local(lambda: self._paths(name),
                                       lambda: is_present(LANGUAGE_MODELS[name]))
        return load(name, device)

    def nothing_to_fetch(self, name: str) -> str | None:
        return None

    def fetch(self, name: str, progress: bool = True) -> Path:
        return fetch(name)


SOURCE = HubLanguageModelSource()
