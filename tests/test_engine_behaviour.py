"""Engine guarantees: completeness, determinism, the model left untouched, threads, memory
retries, transformer layers and clear errors."""

import threading

import pytest
import torch
from support.engine_models import (
    images,
    make_tiny_text_model,
    max_rel_diff,
    small_cnn,
    tiny_hf_vit,
    tiny_swin,
    tiny_vit,
)
from torch import nn

import saliency_core as sc
from saliency_core.errors import (
    CancelledError,
    InputShapeError,
    LayerError,
    MethodNotApplicableError,
    ParameterError,
    TargetError,
    UnknownMethodError,
)

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory):
    return make_tiny_text_model(tmp_path_factory.mktemp("tinybert"))


ALL_METHODS = [s.name for s in sc.methods()]
FAST_PARAMS = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 3}}


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_method_specs_are_complete():
    names = {"gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_backprop",
             "deconvnet", "gradcam", "gradcam_plus_plus", "hirescam", "layercam", "xgradcam",
             "guided_gradcam", "attention_rollout", "attention_relevance"}
    assert set(ALL_METHODS) == names
    for spec in sc.methods():
        assert spec.description and spec.family in ("input", "cam")
        for p in spec.params:
            assert p.help and p.validate(p.default) == p.default
    assert sc.get_method("integrated_gradients").param("steps").default == 50
    assert sc.get_method("smoothgrad").param("sigma").default == 0.15


# Every method on a model it applies to: the attention methods need a transformer's
# attention, the others run on the CNN.
ATTENTION_METHODS = ("attention_rollout", "attention_relevance")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_model_untouched_and_shapes(method):
    attention = method in ATTENTION_METHODS
    model = tiny_hf_vit() if attention else small_cnn()
    before = snapshot(model)
    x = torch.randn(2, 3, 16, 16) if attention else images()
    e = sc.explain(model, x, method, **FAST_PARAMS.get(method, {}))
    side = x.shape[-1] if attention else 16
    expected = (2, side, side) if sc.get_method(method).family == "cam" else x.shape
    assert tuple(e.attribution.shape) == tuple(expected)
    assert torch.isfinite(e.attribution).all()
    assert e.metadata["method"] == method and e.metadata["passes"] >= 2
    assert hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("method", ["gradcam", "guided_backprop", "integrated_gradients", "guided_gradcam"])
def test_hooks_removed_after_an_exception(method):
    model = small_cnn()
    with pytest.raises(TargetError):
        sc.attribute(model, images(), method, target=99, **FAST_PARAMS.get(method, {}))
    assert hook_count(model) == 0
    # The model still works normally afterwards.
    sc.attribute(model, images(), "gradient", target=0)


def test_completeness_gap_shrinks_with_steps():
    model = small_cnn()
    x = images(1)
    gaps = []
    for steps in (4, 16, 64):
        e = sc.explain(model, x, "integrated_gradients", target=2, steps=steps,
                       quadrature="riemann_middle", baseline="zeros")
        gaps.append(abs(e.metadata["completeness_delta"][0]))
    assert gaps[2] < gaps[1] < gaps[0]
    assert gaps[2] < 0.01 * abs(e.metadata["f_x"][0] - e.metadata["f_baseline"][0])


def test_gauss_legendre_sums_to_the_output_difference():
    model = small_cnn()
    e = sc.explain(model, images(1), "integrated_gradients", target=1, steps=64)
    m = e.metadata
    assert abs(m["sum_attribution"][0] - (m["f_x"][0] - m["f_baseline"][0])) == pytest.approx(abs(m["completeness_delta"][0]))
    assert abs(m["completeness_delta"][0]) < 0.02 * abs(m["f_x"][0] - m["f_baseline"][0]) + 1e-6


def test_seeded_randomness_is_deterministic():
    model = small_cnn()
    x = images()
    a = sc.attribute(model, x, "smoothgrad", samples=4, seed=7)
    b = sc.attribute(model, x, "smoothgrad", samples=4, seed=7)
    c = sc.attribute(model, x, "smoothgrad", samples=4, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    u1 = sc.attribute(model, x, "integrated_gradients", steps=4, baseline="uniform", baseline_samples=3, seed=1)
    u2 = sc.attribute(model, x, "integrated_gradients", steps=4, baseline="uniform", baseline_samples=3, seed=1)
    assert torch.equal(u1, u2)


def test_smoothgrad_samples_nest_and_batching_does_not_change_results():
    model = small_cnn()
    x = images(1)
    from saliency_core.methods.smoothgrad import noisy_copies

    assert torch.equal(noisy_copies(x, 4, 0.2, 3), noisy_copies(x, 8, 0.2, 3)[:4])
    a = sc.attribute(model, x, "smoothgrad", target=0, samples=6, batch_size=1)
    b = sc.attribute(model, x, "smoothgrad", target=0, samples=6, batch_size=64)
    assert max_rel_diff(a, b) < 1e-5


@pytest.mark.parametrize("variant", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_smoothgrad_variants_match_captum_noise_tunnel(variant):
    from captum.attr import NoiseTunnel, Saliency

    from saliency_core.methods.smoothgrad import noisy_copies

    model = small_cnn()
    x = images(1)
    ours = sc.attribute(model, x, "smoothgrad", target=1, samples=5, sigma=0.1, variant=variant, seed=3)
    noisy = noisy_copies(x, 5, 0.1, 3)
    grads = Saliency(model).attribute(noisy, target=1, abs=False)
    ref = {"smoothgrad": grads.mean(0), "smoothgrad_sq": (grads ** 2).mean(0),
           "vargrad": (grads ** 2).mean(0) - grads.mean(0) ** 2}[variant]
    assert max_rel_diff(ours[0], ref) < 1e-5
    assert NoiseTunnel  # Captum's tunnel draws its own noise; the formulas are compared here


def test_smoothgrad_composes_with_integrated_gradients():
    model = small_cnn()
    x = images(1)
    e = sc.explain(model, x, "smoothgrad", target=0, samples=3, base="integrated_gradients", steps=5)
    assert e.metadata["passes"] == 15  # every noisy path point went through one stream
    assert e.metadata["params"]["steps"] == 5


def test_two_threads_share_one_model():
    model = small_cnn()
    x = images()
    expected = {m: sc.attribute(model, x, m, target=1) for m in ("gradcam", "guided_backprop", "gradient")}
    results, errors = {}, []

    def work(method):
        try:
            for _ in range(3):
                results[method] = sc.attribute(model, x, method, target=1)
        except Exception as exc:  # noqa: BLE001 - any failure in a thread is reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m,)) for m in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for m, ref in expected.items():
        assert torch.equal(results[m], ref)
    assert hook_count(model) == 0


class OOMOnBigBatches(nn.Module):
    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit, self.sizes = inner, limit, []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(x)


def test_out_of_memory_halves_the_chunk_and_retries():
    inner = small_cnn()
    model = OOMOnBigBatches(inner, limit=3)
    x = images(1)
    e = sc.explain(model, x, "integrated_gradients", target=0, steps=16, batch_size=16)
    ref = sc.attribute(inner, x, "integrated_gradients", target=0, steps=16)
    assert max_rel_diff(e.attribution, ref) < 1e-5
    assert e.metadata["oom_retries"] >= 2 and max(s for s in model.sizes if s <= 3) == 2


def test_automatic_chunking_respects_a_memory_budget():
    model = small_cnn()
    x = images(1)
    small = sc.explain(model, x, "integrated_gradients", target=0, steps=32, memory_budget=200_000)
    big = sc.explain(model, x, "integrated_gradients", target=0, steps=32)
    assert small.metadata["chunk_size"] < big.metadata["chunk_size"]
    assert max_rel_diff(small.attribution, big.attribution) < 1e-5


def test_progress_and_cancel():
    model = small_cnn()
    seen = []
    sc.attribute(model, images(1), "integrated_gradients", target=0, steps=8, batch_size=2,
                 progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 8) and seen[-1] == (8, 8) and len(seen) == 5
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError):
        sc.attribute(model, images(1), "integrated_gradients", target=0, steps=8, cancel=stop)


def test_targets_forms():
    model = small_cnn()
    x = images(3)
    e = sc.explain(model, x, "gradient")
    assert torch.equal(e.target, e.predicted)
    per_sample = sc.attribute(model, x, "gradient", target=[0, 1, 2])
    assert max_rel_diff(per_sample[1:2], sc.attribute(model, x[1:2], "gradient", target=1)) < 1e-5
    with pytest.raises(TargetError, match="out of range"):
        sc.attribute(model, x, "gradient", target=5)
    with pytest.raises(TargetError, match="3 inputs"):
        sc.attribute(model, x, "gradient", target=[0, 1])


def test_clear_errors():
    model = small_cnn()
    x = images()
    with pytest.raises(UnknownMethodError, match="available"):
        sc.attribute(model, x, "lime")
    with pytest.raises(ParameterError, match=r"steps=0 is out of range; allowed: \[2, 1024\]"):
        sc.attribute(model, x, "integrated_gradients", steps=0)
    with pytest.raises(ParameterError, match="must be one of"):
        sc.attribute(model, x, "integrated_gradients", quadrature="simpson")
    with pytest.raises(ParameterError, match="has no parameter"):
        sc.attribute(model, x, "gradient", steps=3)
    with pytest.raises(LayerError, match="candidates: .*features"):
        sc.attribute(model, x, "gradcam", layer="featurez.5")
    with pytest.raises(InputShapeError, match="unsqueeze"):
        sc.attribute(model, x[0], "gradient")
    with pytest.raises(InputShapeError, match="float"):
        sc.attribute(model, (x * 255).to(torch.uint8), "gradient")


class DictOutput(nn.Module):
    def __init__(self, inner, style):
        super().__init__()
        self.inner, self.style = inner, style

    def forward(self, x):
        logits = self.inner(x)
        if self.style == "dict":
            return {"logits": logits}
        if self.style == "tuple":
            return (logits, None)
        from transformers.modeling_outputs import ImageClassifierOutput

        return ImageClassifierOutput(logits=logits)


@pytest.mark.parametrize("style", ["dict", "tuple", "hf"])
def test_models_returning_dicts_tuples_and_output_objects(style):
    inner = small_cnn()
    x = images()
    ref = sc.attribute(inner, x, "gradcam", target=1, layer="features.5")
    ours = sc.attribute(DictOutput(inner, style), x, "gradcam", target=1, layer="inner.features.5")
    assert torch.equal(ours, ref)


def test_vit_gradcam_uses_the_patch_grid_and_guided_backprop_refuses_gelu():
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    cam = sc.attribute(model, x, "gradcam", target=1, layer="encoder.layers.encoder_layer_1.ln_1", upsample=False)
    assert cam.shape == (2, 4, 4)
    assert sc.attribute(model, x, "gradcam", target=1, layer="encoder.layers.encoder_layer_1.ln_1").shape == (2, 32, 32)
    ig = sc.attribute(model, x, "integrated_gradients", target=1, steps=4)
    assert ig.shape == x.shape
    with pytest.raises(MethodNotApplicableError, match="ReLU"):
        sc.attribute(model, x, "guided_backprop", target=1)
    assert hook_count(model) == 0


def test_swin_channels_last_layers_are_handled():
    model = tiny_swin()
    x = torch.randn(1, 3, 32, 32)
    cam = sc.attribute(model, x, "hirescam", target=0, layer="features.3", upsample=False)
    assert cam.shape == (1, 4, 4)
    names = [name for name, _shape in sc.candidate_layers(model, x)]
    assert "features.3" in names and "norm" in names


def test_default_layer_is_a_late_spatial_layer():
    model = small_cnn()
    e = sc.explain(model, images(), "gradcam", target=1)
    # The container "features" and its last ReLU produce the same tensor.
    assert e.metadata["layer"] in ("features", "features.6")
    assert torch.equal(e.attribution, sc.attribute(model, images(), "gradcam", target=1, layer="features.6"))


def test_text_methods_and_baselines(tiny_text_model):
    model, tok = tiny_text_model
    for baseline in ("pad", "mask", "unk", "zeros"):
        r = sc.attribute_text(model, tok, "the film was great", "integrated_gradients", steps=8, baseline=baseline)
        assert len(r.tokens) == len(r.scores) == r.attribution.shape[0]
        gap = r.metadata["completeness_delta"][0]
        assert abs(gap) < 0.05 * abs(r.metadata["f_x"][0] - r.metadata["f_baseline"][0]) + 1e-3
    g = sc.attribute_text(model, tok, "the film was great", "smoothgrad", samples=3)
    assert g.metadata["aggregation"] == "l2" and (g.scores >= 0).all()
    with pytest.raises(MethodNotApplicableError, match="ReLU"):
        sc.attribute_text(model, tok, "the film", "guided_backprop")
    with pytest.raises(MethodNotApplicableError):
        sc.attribute_text(model, tok, "the film", "gradcam")
    with pytest.raises(sc.SaliencyError, match="enter some text"):
        sc.attribute_text(model, tok, "   ", "gradient")
    long = sc.attribute_text(model, tok, "the film " * 40, "gradient", max_length=16)
    assert long.metadata["truncated"] and len(long.tokens) == 16


def test_text_models_get_a_text_baseline_by_default(tiny_text_model):
    model, tok = tiny_text_model
    spec = sc.get_method("integrated_gradients")
    assert spec.defaults("text")["baseline"] == "pad" and spec.defaults()["baseline"] == "black"
    r = sc.attribute_text(model, tok, "the film was great", "integrated_gradients", steps=4)
    assert r.metadata["params"]["baseline"] == "pad"
