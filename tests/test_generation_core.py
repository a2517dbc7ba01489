"""Next-token attribution of causal language models (saliency_core.attribute_generation):
agreement with Captum's LLMGradientAttribution, causality, targets and contrasts, chat
templates, caps and errors, Stop and progress, and every architecture the issue names.
All models are tiny, built offline from configurations with seeded random weights."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
import torch
from support.tiny_lm import CHAT_TEMPLATE, build

import saliency_core as sc
from saliency_core.errors import (
    CancelledError,
    InputShapeError,
    MethodNotApplicableError,
    ParameterError,
    SaliencyError,
    TargetError,
)
from saliency_core.targets import NextToken
from saliency_core.text.generation import MAX_NEW_TOKENS_ENV, MAX_PROMPT_ENV

PROMPT = "the cat sat on the mat . the dog"


@pytest.fixture(scope="module")
def gpt2():
    return build("gpt2")


def captum_matrix(model, tokenizer, prompt, generated_ids, layer_method, **kwargs):
    """Captum's LLMGradientAttribution on the embedding layer: [G, P] for the same targets."""
    from captum.attr import LLMGradientAttribution, TextTokenInput

    attr = LLMGradientAttribution(layer_method(model, model.get_input_embeddings()), tokenizer)
    result = attr.attribute(TextTokenInput(prompt, tokenizer), target=torch.tensor(generated_ids),
                            **kwargs)
    return result.token_attr.detach().numpy()


def test_gradient_x_input_agrees_with_captum_on_the_prompt_columns(gpt2):
    from captum.attr import LayerGradientXActivation

    model, tokenizer = gpt2
    ga = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input", max_new_tokens=5)
    expected = captum_matrix(model, tokenizer, PROMPT, ga.generated_ids, LayerGradientXActivation)
    assert ga.matrix.shape == (5, ga.prompt_length + 5) and expected.shape == (5, ga.prompt_length)
    np.testing.assert_allclose(ga.matrix[:, :ga.prompt_length], expected, rtol=1e-4, atol=1e-6)
    assert ga.metadata["backward_batched"] and ga.metadata["passes"] == 1
    # Captum makes one forward per generated token; the batched path one for all of them.
    assert ga.metadata["forwards"] <= 1  # at most the chunk-size measure, besides the pass


def test_integrated_gradients_agrees_with_captum_with_the_same_baseline_and_steps(gpt2):
    from captum.attr import LayerIntegratedGradients

    model, tokenizer = gpt2
    ga = sc.attribute_generation(model, tokenizer, PROMPT, "integrated_gradients",
                                 continuation=" sat on the rug", steps=12, baseline="pad")
    assert any("no pad token" in n for n in ga.metadata["notes"])  # GPT-2's end-of-text stands in
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    expected = captum_matrix(model, tokenizer, PROMPT, ga.generated_ids, LayerIntegratedGradients,
                             baselines=torch.full_like(ids, tokenizer.eos_token_id), n_steps=12)
    np.testing.assert_allclose(ga.matrix[:, :ga.prompt_length], expected, rtol=1e-4, atol=1e-6)
    # The path moves the prompt only (as Captum's): the generated columns stay zero.
    assert not ga.matrix[:, ga.prompt_length:].any()
    check = ga.metadata["completeness"]
    assert len(check["relative_gap"]) == len(ga.generated_tokens)
    np.testing.assert_allclose(ga.matrix.sum(1), check["sum_attribution"], rtol=1e-4, atol=1e-6)
    assert max(abs(v) for v in check["relative_gap"]) < 0.1


def test_a_generated_token_depends_only_on_what_came_before_it(gpt2):
    model, tokenizer = gpt2
    ga = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input", max_new_tokens=4)
    plen = ga.prompt_length
    for g in range(4):
        assert not ga.matrix[g, plen + g:].any()
        assert ga.matrix[g, :plen + g].any()
    # Earlier generated tokens are sources too for the gradient methods.
    assert ga.matrix[3, plen:plen + 3].any()
    assert ga.source_tokens[plen:] == ga.generated_tokens
    # Greedy: each generated token is the model's top candidate.
    assert [alt[0][0] for alt in ga.top_alternatives] == ga.generated_tokens
    np.testing.assert_allclose(ga.probabilities, [alt[0][1] for alt in ga.top_alternatives], rtol=1e-5)
    # The probabilities come from the gradient pass itself, and are the model's.
    with torch.no_grad():
        logits = model(torch.tensor([ga.source_ids])).logits[0, plen - 1:-1]
    expected = torch.softmax(logits, -1).gather(1, torch.tensor(ga.generated_ids)[:, None])[:, 0]
    np.testing.assert_allclose(ga.probabilities, expected.numpy(), rtol=1e-5)
    assert ga.metadata["forwards"] <= 1  # at most the chunk-size measure, no pass of its own


def test_targets_and_contrast_are_the_scores_explained(gpt2):
    model, tokenizer = gpt2
    one = {"continuation": " sat"}
    log_prob = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input", **one)
    logit = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input", target="logit", **one)
    other = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input", continuation=" dog")
    versus = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input", contrast=" dog", **one)
    other_logit = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input",
                                          continuation=" dog", target="logit")
    assert not np.allclose(log_prob.matrix, logit.matrix)
    # log p(sat) - log p(dog) = logit(sat) - logit(dog): gradient x input is linear in the score.
    np.testing.assert_allclose(versus.matrix, log_prob.matrix - other.matrix, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(versus.matrix, logit.matrix - other_logit.matrix, rtol=1e-4, atol=1e-6)
    assert versus.target == {"score": "log_prob", "rather_than": " dog"}
    by_id = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input",
                                    target=NextToken("log_prob", rather_than=other.generated_ids[0]), **one)
    np.testing.assert_allclose(by_id.matrix, versus.matrix, rtol=1e-6)
    prob = sc.attribute_generation(model, tokenizer, PROMPT, "gradient", target="probability", **one)
    assert prob.metadata["aggregation"] == "l2" and (prob.matrix >= 0).all()
    with pytest.raises(TargetError, match="is 2 tokens"):
        sc.attribute_generation(model, tokenizer, PROMPT, "gradient", contrast=" the mat", **one)
    with pytest.raises(TargetError, match="log_prob, logit, probability"):
        sc.attribute_generation(model, tokenizer, PROMPT, "gradient", target="entropy", **one)


def test_chat_messages_mark_template_tokens():
    model, tokenizer = build("gpt2")  # its own tokenizer: the template is set on it
    with pytest.raises(SaliencyError, match="no chat template"):
        sc.attribute_generation(model, tokenizer, [{"role": "user", "content": "the cat"}], "gradient")
    tokenizer.chat_template = CHAT_TEMPLATE
    messages = [{"role": "system", "content": "the dog sat"}, {"role": "user", "content": "the cat"}]
    ga = sc.attribute_generation(model, tokenizer, messages, "gradient_x_input", max_new_tokens=2)
    prompt = ga.source_tokens[:ga.prompt_length]
    marked = [t for t, s in zip(prompt, ga.special_mask) if s]
    content = [t for t, s in zip(prompt, ga.special_mask) if not s]
    assert "".join(content).replace(" ", "") == "thedogsatthecat"
    assert "<|endoftext|>" in marked and "assistant" in "".join(marked)
    # An unknown-token stands for what the user wrote: explained, not marked.
    tokenizer.add_special_tokens({"unk_token": "<unk>"})
    model.resize_token_embeddings(len(tokenizer))
    unk = sc.attribute_generation(model, tokenizer, "the <unk> cat", "gradient", max_new_tokens=1)
    assert "<unk>" in unk.source_tokens and not unk.special_mask.any()
    for g in range(2):  # special tokens take no part in a row's scale
        row = ga.normalized(g)
        assert np.abs(row[ga.visible(g)]).max() == pytest.approx(1.0)
        assert not row[ga.special_mask].any()


def test_hostile_prompts_and_caps_give_clear_errors(gpt2, monkeypatch):
    model, tokenizer = gpt2
    with pytest.raises(SaliencyError, match="enter a prompt"):
        sc.attribute_generation(model, tokenizer, "   ", "gradient")
    with pytest.raises(SaliencyError, match="continuation is empty"):
        sc.attribute_generation(model, tokenizer, "the cat", "gradient", continuation="")
    long = " ".join(["the cat"] * 40)
    with pytest.raises(InputShapeError, match="at most 16 are explained"):
        sc.attribute_generation(model, tokenizer, long, "gradient", max_prompt_tokens=16)
    monkeypatch.setenv(MAX_PROMPT_ENV, "8")
    with pytest.raises(InputShapeError, match="at most 8 are explained"):
        sc.attribute_generation(model, tokenizer, long, "gradient")
    monkeypatch.delenv(MAX_PROMPT_ENV)
    with pytest.raises(InputShapeError, match="reads at most 128"):  # the model's context
        sc.attribute_generation(model, tokenizer, " ".join(["the cat"] * 70), "gradient")
    monkeypatch.setenv(MAX_NEW_TOKENS_ENV, "4")
    with pytest.raises(ParameterError, match=r"max_new_tokens must be a whole number in \[1, 4\]"):
        sc.attribute_generation(model, tokenizer, "the cat", "gradient", max_new_tokens=5)
    with pytest.raises(ParameterError, match="at most 4"):
        sc.attribute_generation(model, tokenizer, "the", "gradient", continuation=" cat sat on the mat")
    with pytest.raises(MethodNotApplicableError, match="does not explain generated tokens"):
        sc.attribute_generation(model, tokenizer, "the cat", "gradcam")
    with pytest.raises(ParameterError, match="pad, unk, zeros"):
        sc.attribute_generation(model, tokenizer, "the cat", "integrated_gradients", baseline="blur")
    with pytest.raises(ParameterError, match="has no parameter"):
        sc.attribute_generation(model, tokenizer, "the cat", "gradient", steps=4)
    # Control characters are text like any other: explained, not a crash.
    ga = sc.attribute_generation(model, tokenizer, "the\x00cat\u202e sat", "gradient", max_new_tokens=1)
    assert np.isfinite(ga.matrix).all()


def test_stop_and_progress_go_through_the_stream(gpt2):
    model, tokenizer = gpt2
    seen = []
    sc.attribute_generation(model, tokenizer, PROMPT, "integrated_gradients", max_new_tokens=3,
                            steps=8, batch_size=3, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 8) and seen[-1] == (8, 8) and len(seen) == 4  # chunks of 3, 3, 2
    # A memory budget of one byte: one point per chunk, the same numbers.
    whole = sc.attribute_generation(model, tokenizer, PROMPT, "integrated_gradients",
                                    max_new_tokens=3, steps=4)
    pieces = sc.attribute_generation(model, tokenizer, PROMPT, "integrated_gradients",
                                     max_new_tokens=3, steps=4, memory_budget=1)
    assert pieces.metadata["chunk_size"] == 1 < whole.metadata["chunk_size"]
    np.testing.assert_allclose(pieces.matrix, whole.matrix, rtol=1e-4, atol=1e-7)
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError):
        sc.attribute_generation(model, tokenizer, PROMPT, "integrated_gradients", max_new_tokens=3,
                                should_stop=stop)


def test_smoothgrad_averages_its_base_over_noisy_embeddings(gpt2):
    model, tokenizer = gpt2
    ga = sc.attribute_generation(model, tokenizer, PROMPT, "smoothgrad", max_new_tokens=3,
                                 samples=4, sigma=0.0, base="gradient_x_input")
    plain = sc.attribute_generation(model, tokenizer, PROMPT, "gradient_x_input", max_new_tokens=3)
    np.testing.assert_allclose(ga.matrix, plain.matrix, rtol=1e-4, atol=1e-7)  # no noise: the base
    noisy = sc.attribute_generation(model, tokenizer, PROMPT, "smoothgrad", max_new_tokens=3,
                                    samples=4, sigma=0.2, base="integrated_gradients", steps=4)
    assert noisy.metadata["passes"] == 16 and not np.allclose(noisy.matrix, plain.matrix)
    with pytest.raises(MethodNotApplicableError):
        sc.attribute_generation(model, tokenizer, PROMPT, "smoothgrad", base="guided_backprop")


def test_results_export_and_show_themselves(gpt2):
    model, tokenizer = gpt2
    ga = sc.attribute_generation(model, tokenizer, PROMPT, "integrated_gradients", max_new_tokens=2,
                                 steps=4, baseline="zeros")
    doc = json.loads(ga.to_json())
    assert doc["matrix"] == ga.matrix.astype(float).tolist() and doc["method"] == "integrated_gradients"
    buffer = io.BytesIO()
    ga.save_npz(buffer)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["matrix"], ga.matrix)
        assert json.loads(str(npz["meta"]))["source_tokens"] == ga.source_tokens
    assert ga._repr_png_()[1:4] == b"PNG"
    html = ga._repr_html_()
    assert "<img" in html and html.count("<tr>") == 2


@pytest.mark.parametrize("architecture", ["gpt2", "llama", "qwen2", "gemma", "gpt_neox", "opt"])
def test_every_named_architecture_is_explained(architecture):
    model, tokenizer = build(architecture)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # The end-of-text baseline: from zeros, RMSNorm (Llama, Qwen2, Gemma) is far from linear
    # and the path needs many more steps to converge.
    ga = sc.attribute_generation(model, tokenizer, "the cat sat", "integrated_gradients",
                                 max_new_tokens=2, steps=16, baseline="pad")
    assert ga.matrix.shape == (len(ga.generated_tokens), len(ga.source_tokens))
    assert ga.metadata["backward_batched"]
    assert max(abs(v) for v in ga.metadata["completeness"]["relative_gap"]) < 0.05
    for g in range(len(ga.generated_tokens)):
        assert not ga.matrix[g, ga.prompt_length + g:].any()
    # The model is never changed: no hook left behind, the weights as they were.
    assert not model.get_output_embeddings()._forward_pre_hooks
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
