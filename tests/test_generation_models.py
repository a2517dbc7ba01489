"""The zoo's language models end to end: listed with their download sizes, a clear message
while absent, fetched for real from a local HTTP mirror (HF_ENDPOINT) serving a tiny GPT-2
checkpoint the test writes, then loaded offline from the cache and explained."""

from __future__ import annotations

import numpy as np
import pytest
from support.hub_mirror import HubMirror
from support.tiny_lm import CHAT_TEMPLATE, save_tiny_gpt2

import saliency_core as sc
from saliency_core.errors import ModelUnavailableError
from saliency_core.models import forget_loaded, hf_lm

pytestmark = pytest.mark.usefixtures("temp_cache")  # tests/conftest.py


def upstream(tmp_path, chat: bool = False):
    folder = tmp_path / ("upstream-chat" if chat else "upstream")
    model, tokenizer = save_tiny_gpt2(folder)
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.save_pretrained(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    files["pytorch_model.bin"] = b"an older copy of the weights that must not be fetched"
    files["README.md"] = b"# not needed to run the model\n"
    return model, tokenizer, files


def test_the_zoo_lists_language_models_and_says_how_to_fetch_them():
    listed = {m.name: m for m in sc.available_models()}
    for name, spec in hf_lm.LANGUAGE_MODELS.items():
        info = listed[name]
        assert info.task == "text-generation" and info.source == "zoo" and not info.present
        assert info.size_bytes == spec.download_bytes > 100_000_000
    with pytest.raises(ModelUnavailableError, match="python -m saliency_core fetch gpt2"):
        sc.load_model("gpt2", device="cpu")


def test_a_language_model_fetched_from_the_mirror_loads_offline_and_is_explained(
        monkeypatch, tmp_path):
    model, tokenizer, files = upstream(tmp_path)
    with HubMirror() as mirror:
        mirror.repos["openai-community/gpt2"] = files
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        hf_lm.fetch("gpt2")
    snapshot = hf_lm.snapshot_dir("openai-community/gpt2")
    fetched = sorted(p.name for p in snapshot.iterdir())
    assert "model.safetensors" in fetched and "config.json" in fetched
    assert "pytorch_model.bin" not in fetched and "README.md" not in fetched
    forget_loaded()
    info = {m.name: m for m in sc.available_models()}["gpt2"]
    assert info.present and info.size_bytes == sum((snapshot / f).stat().st_size for f in fetched)
    loaded = sc.load_model("gpt2", device="cpu")  # the mirror is gone: from the cache alone
    assert loaded.task == "text-generation" and loaded.model.config._attn_implementation == "eager"
    ga = sc.attribute_generation(loaded, None, "the cat sat on", "gradient_x_input", max_new_tokens=3)
    reference = sc.attribute_generation(model, tokenizer, "the cat sat on", "gradient_x_input",
                                        max_new_tokens=3)
    assert ga.generated_tokens == reference.generated_tokens
    np.testing.assert_allclose(ga.matrix, reference.matrix, rtol=1e-5, atol=1e-7)


def test_an_instruct_model_keeps_its_chat_template_through_the_fetch(monkeypatch, tmp_path):
    _model, _tokenizer, files = upstream(tmp_path, chat=True)
    with HubMirror() as mirror:
        mirror.repos["HuggingFaceTB/SmolLM2-135M-Instruct"] = files
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        hf_lm.fetch("SmolLM2-135M-Instruct")
    loaded = sc.load_model("SmolLM2-135M-Instruct", device="cpu")
    assert loaded.card["chat"]
    ga = sc.attribute_generation(loaded, loaded.tokenizer, [{"role": "user", "content": "the cat"}],
                                 "gradient", max_new_tokens=2)
    assert ga.special_mask[:ga.prompt_length].any() and not ga.special_mask[ga.prompt_length:].any()
