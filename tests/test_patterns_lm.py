"""The bundled language model with known answers: its generated text plants the dependencies
it claims, its tokenizer is a real Hugging Face one, it loads offline as a text-generation
model and predicts the planted words, and attribution methods point at the planted source
(measured numbers: docs/planted_lm.md)."""

from __future__ import annotations

import pytest
import torch

from saliency_core.evaluation.planted import pointing_accuracy, randomization_check
from saliency_core.models import available_models, bundled, forget_loaded, load_model
from saliency_core.training import patterns
from saliency_core.training.patterns_lm import target_accuracy


@pytest.fixture(scope="module")
def lm():
    forget_loaded()
    yield load_model("patterns-lm", device="cpu")
    forget_loaded()


def test_examples_plant_the_dependency_they_name():
    for e in patterns.generate(300, seed=5):
        source = e.tokens[e.source_position]
        assert e.source_position < e.target_position and e.source_position in e.candidates
        if e.kind == "copy":
            assert e.target == source and e.contrast in patterns.NAMES
            assert e.contrast != source
        elif e.kind == "agreement":
            distractor = e.tokens[e.candidates[1]]
            plural = source.endswith("s") and source not in ("is",)
            assert e.target == ("are" if plural else "is")
            assert e.contrast == ("is" if plural else "are") and distractor != source
        else:
            assert e.target == patterns.BRACKETS[source]
            assert e.contrast == patterns.BRACKETS[e.tokens[e.candidates[1]]] != e.target
    assert patterns.generate(5, 1) == patterns.generate(5, 1)
    assert {e.kind for e in patterns.generate(3, 1)} == set(patterns.KINDS)


def test_tokenizer_reads_text_as_the_corpus_writes_it():
    tokenizer = patterns.build_tokenizer()
    ids = tokenizer("Alice went to the Market. Later, ALICE")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<bos>", "alice", "went", "to", "the", "market", ".", "later", ",", "alice"]  # fmt: skip
    plain = tokenizer("(a [b])", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(plain) == list("(a[b])")
    assert tokenizer("zebra", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]
    for e in patterns.generate(30, seed=9):
        ids = tokenizer(e.text, add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids) == list(e.tokens)


def test_bundled_language_model_loads_offline_as_text_generation(lm):
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    info = next(m for m in available_models() if m.name == "patterns-lm")
    assert info.task == "text-generation" and info.source == "bundled" and info.present
    assert lm.task == "text-generation" and not lm.model.training
    assert isinstance(lm.model, GPT2LMHeadModel)
    assert isinstance(lm.tokenizer, PreTrainedTokenizerFast)
    assert lm.model.lm_head.weight.data_ptr() == lm.model.transformer.wte.weight.data_ptr()
    card = bundled.read_card("patterns-lm")
    assert card["quick"] is False
    assert min(card["metrics"]["next_word_accuracy"].values()) >= 0.99


def test_bundled_model_predicts_every_planted_word_on_fresh_text(lm):
    accuracy = target_accuracy(lm.model, lm.tokenizer, patterns.generate(150, seed=777))
    assert accuracy == {"copy": 1.0, "agreement": 1.0, "brackets": 1.0}


def test_bundled_model_generates_the_copied_name(lm):
    import saliency_core as sc

    ga = sc.attribute_generation(lm, None, "grace went to the park . later ,", "gradient",
                                 max_new_tokens=2)
    assert ga.generated_tokens[0] == "grace"


# Floors just under the measured pointing accuracies (docs/planted_lm.md; python -m
# saliency_core.evaluation.planted --per-kind 50), under the documented protocol, the same for
# every method: each planted word explained rather than its planted alternative, pointing among
# the candidates. Integrated Gradients (unk baseline, 32 steps) meets the goal of 0.9 on every
# kind (1.00 / 1.00 / 0.94); gradient x input only on agreement (0.54 / 1.00 / 0.76: the docs
# say where it misses). The default tier checks the first 12 examples of each kind (where IG
# misses 2 of the 12 bracket examples: 0.83); `make test-lm` the documented 50.
FLOORS = {
    12: {
        "gradient": {"copy": 0.9, "agreement": 0.9, "brackets": 0.9},
        "integrated_gradients": {"copy": 0.9, "agreement": 0.9, "brackets": 0.8},
        "gradient_x_input": {"agreement": 0.9},
    },
    50: {
        "gradient": {"copy": 0.95, "agreement": 0.95, "brackets": 0.9},
        "integrated_gradients": {"copy": 0.95, "agreement": 0.95, "brackets": 0.9},
        "gradient_x_input": {"copy": 0.5, "agreement": 0.95, "brackets": 0.7},
    },
}
PARAMS = {"integrated_gradients": {"steps": 32, "baseline": "unk"}}
CASES = [
    pytest.param(n, method, marks=[pytest.mark.long] if n > 12 else [])
    for n in FLOORS
    for method in FLOORS[n]
]


@pytest.mark.parametrize(("per_kind", "method"), CASES)
def test_methods_point_at_the_planted_source(lm, per_kind, method):
    floors = FLOORS[per_kind][method]
    result = pointing_accuracy(lm, None, method, per_kind=per_kind, contrast=True,
                               kinds=list(floors), **PARAMS.get(method, {}))  # fmt: skip
    for kind, floor in floors.items():
        assert result.accuracy[kind]["candidates"] >= floor, (kind, result.accuracy)
    if method == "integrated_gradients":
        # Enough steps: the attributions add up to the change of the score (measured 3.6%).
        assert result.completeness_gap is not None and result.completeness_gap < 0.05


def test_randomizing_the_model_destroys_the_attributions(lm):
    check = randomization_check(lm, None, "integrated_gradients", per_kind=2, steps=8)
    assert len(check.similarity) == len(check.units) >= 4
    assert check.units[0] == "lm_head"  # logits first
    assert max(check.similarity) < 0.6, check
    # The shared model is untouched: it still copies the name.
    ids = lm.tokenizer("ivan went to the park . later ,", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert lm.tokenizer.decode(lm.model(ids).logits[0, -1].argmax()) == "ivan"


def test_the_next_word_modes_default_view_points_at_the_copied_name(lm):
    """What a new user sees first (the Text page's Next word mode: its first sample, its
    default method and settings): the generated name's row is largest on the first name."""
    import saliency_core as sc
    from workbench.ui import nextword

    spec = nextword.method_specs()[nextword.DEFAULT_METHOD]
    params = {p.name: p.default_for("text") for p in spec.params if not p.advanced}
    prompt = nextword.samples_for("patterns-lm")[0]
    ga = sc.attribute_generation(lm, None, prompt, spec.name, max_new_tokens=1, **params)
    words = ga.source_tokens[: ga.prompt_length]
    assert ga.generated_tokens == ["alice"] and params["baseline"] == "unk"
    assert words[int(ga.matrix[0, : ga.prompt_length].argmax())] == "alice"
