"""The engine's performance work keeps results exact: no pass that is not needed, and the
same numbers as before each shortcut."""

import pytest
import torch
import torch.nn.functional as F
from support.engine_models import FunctionalCNN, images, max_rel_diff, small_cnn
from torch import nn

import saliency_core as sc
from saliency_core.engine.stream import (
    GradientStream,
    Options,
    Stats,
    balanced_chunk,
    forward_no_grad,
)
from saliency_core.errors import CancelledError
from saliency_core.methods.cam import layer_as_leaf
from saliency_core.methods.guided.backprop import fast_path
from saliency_core.methods.noise import NoiseSource, clear_cache, unit_noise
from saliency_core.methods.smoothgrad import noisy_copies

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")


def test_explain_reads_logits_from_the_gradient_pass():
    model = small_cnn()
    x = images(3)
    sc.explain(model, x, "gradient")  # first call measures the chunk size (one forward)
    for method in ("gradient", "gradient_x_input", "guided_backprop", "gradcam", "guided_gradcam"):
        e = sc.explain(model, x, method, target=[0, 2, 4])
        assert e.metadata["forwards"] == 0, method
        with torch.no_grad():
            logits = model(x)
        assert torch.allclose(e.probabilities, torch.softmax(logits, 1), atol=1e-6)
        assert torch.equal(e.predicted, logits.argmax(1))
        assert torch.allclose(e.score, logits[torch.arange(3), torch.tensor([0, 2, 4])], atol=1e-5)


def test_explain_with_predicted_target_still_explains_the_argmax():
    model = small_cnn()
    x = images(3)
    e = sc.explain(model, x, "gradient")
    assert torch.equal(e.target, e.predicted)
    ref = sc.attribute(model, x, "gradient", target=e.predicted.tolist())
    assert torch.equal(e.attribution, ref)


def test_integrated_gradients_pays_for_f_baseline_only_when_explained():
    model = small_cnn()
    x = images(1)
    sc.attribute(model, x, "gradient", target=0)
    ig = {"target": 1, "steps": 8, "baseline": "zeros"}
    e = sc.explain(model, x, "integrated_gradients", quadrature="gauss_legendre", **ig)
    assert e.metadata["forwards"] == 2  # f(x) and f(baseline)
    left = sc.explain(model, x, "integrated_gradients", quadrature="riemann_left", **ig)
    assert left.metadata["forwards"] == 1  # f(baseline) is the score at the node alpha = 0
    with torch.no_grad():
        f_b = model(torch.zeros_like(x))[0, 1]
    assert left.metadata["f_baseline"][0] == pytest.approx(float(f_b), abs=1e-5)
    assert e.metadata["f_baseline"][0] == pytest.approx(float(f_b), abs=1e-5)


def test_balanced_chunks():
    assert balanced_chunk(100, 64) == 50
    assert balanced_chunk(128, 64) == 64
    assert balanced_chunk(32, 64) == 32
    assert balanced_chunk(7, 1) == 1
    assert balanced_chunk(150, 64) == 50
    assert balanced_chunk(32, 31) == 32  # within the slack: one pass, not two of 16
    assert balanced_chunk(128, 31) == 32
    assert balanced_chunk(32, 20) == 16


def test_bytes_per_point_ignores_parameters():
    big = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4096), nn.ReLU(), nn.Linear(4096, 5))
    x = torch.randn(1, 3, 8, 8)
    stream = GradientStream(big, torch.device("cpu"), Options(), Stats(), module=big)
    per_point = stream._bytes_per_point(lambda a, b: (x, None))
    weights = sum(p.numel() * 4 for p in big.parameters())
    assert per_point < weights / 10  # activations only: a few KB, not the 3 MB of weights


class Block(nn.Module):
    """A residual block whose last BatchNorm output is changed in place (out += identity)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        out = self.bn(self.conv(x))
        out += x
        return self.fc(F.relu(out).mean((2, 3)))


def test_cam_graph_starting_at_the_layer_matches_a_full_graph():
    torch.manual_seed(0)
    model = Block().eval()
    x = torch.randn(2, 3, 8, 8)
    ours = sc.attribute(model, x, "gradcam", target=[1, 3], layer="bn", upsample=False)
    # By hand, with the whole graph recorded: the in-place add makes the captured tensor the
    # block's output, as it always was.
    store = {}
    h = model.bn.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        logits = model(x)
    finally:
        h.remove()
    (g,) = torch.autograd.grad(logits[[0, 1], [1, 3]].sum(), store["a"])
    ref = F.relu((g.mean((2, 3), keepdim=True) * store["a"].detach()).sum(1))
    assert max_rel_diff(ours, ref) < 1e-5
    assert all(p.grad is None for p in model.parameters())


def test_layer_as_leaf_records_nothing_upstream():
    model = small_cnn()
    with torch.no_grad(), layer_as_leaf(model.features[5]) as store:
        out = model(images(1))
    assert out.requires_grad and store["output"].requires_grad
    (g,) = torch.autograd.grad(out[0, 1], store["output"])
    assert g.shape == store["output"].shape
    assert torch.is_grad_enabled()  # no_grad restored the mode the hook switched on


@pytest.mark.parametrize("inplace", [False, True])
def test_fused_guided_gradcam_equals_its_two_parts(inplace):
    model = small_cnn(inplace=inplace)
    x = images()
    t = [1, 3]
    first = sc.attribute(model, x, "guided_gradcam", target=t, layer="features.5")  # two passes
    assert fast_path(model) is not None  # checked on that first guided call
    e = sc.explain(model, x, "guided_gradcam", target=t, layer="features.5")  # one pass
    assert e.metadata["passes"] == 2 and e.metadata["forwards"] == 0
    gb = sc.attribute(model, x, "guided_backprop", target=t)
    cam = sc.attribute(model, x, "gradcam", target=t, layer="features.5")
    assert max_rel_diff(e.attribution, gb * cam[:, None]) < 1e-6
    assert max_rel_diff(first, e.attribution) < 1e-6
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_relu_module_hooks_are_used_only_where_they_give_the_rule(monkeypatch):
    # With the native graph rule off (tests/test_engine_guided_paths.py covers it).
    from saliency_core.methods.guided import graph_rule

    monkeypatch.setitem(graph_rule._state, "status", "failed")
    functional = FunctionalCNN(small_cnn()).eval()
    x = images()
    a = sc.attribute(functional, x, "guided_backprop", target=1)
    assert fast_path(functional) is None  # its ReLUs are functions: the operator-level rule stays
    assert torch.equal(a, sc.attribute(functional, x, "guided_backprop", target=1))
    plain = small_cnn(inplace=True)
    a = sc.attribute(plain, x, "guided_backprop", target=1)
    assert fast_path(plain) == "hooks"
    b = sc.attribute(plain, x, "guided_backprop", target=1)  # through the hooks
    assert torch.equal(a, b)
    assert max_rel_diff(b, sc.attribute(functional, x, "guided_backprop", target=1)) < 1e-6


def test_guided_gradcam_refuses_models_without_relu():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    with pytest.raises(sc.SaliencyError, match="ReLU"):
        sc.attribute(model, images(1), "guided_gradcam", target=0, layer="0")


def test_noise_is_cached_nested_and_identical_to_fresh_draws():
    clear_cache()
    x = images(2, size=9)
    fresh = noisy_copies(x, 5, 0.2, 4)
    again = noisy_copies(x, 5, 0.2, 4)  # from the cache
    assert torch.equal(fresh, again)
    source = NoiseSource(x, 0.2, 4)
    parts = torch.cat([source.take(2).view(2, 2, -1), source.take(4).view(2, 4, -1)], 1)
    clear_cache()
    assert torch.equal(parts, noisy_copies(x, 6, 0.2, 4).view(2, 6, -1))
    # Another image of the same size reuses the unit noise, scaled to its own range.
    y = images(2, size=9, seed=5)
    assert torch.equal(noisy_copies(y, 5, 0.2, 4), noisy_copies(y, 5, 0.2, 4))
    assert unit_noise(4, 0, (3, 9, 9), 0, 3, torch.device("cpu")).shape == (3, 3, 9, 9)


def test_noise_cache_is_bounded(monkeypatch):
    from saliency_core.methods import noise

    clear_cache()
    monkeypatch.setitem(noise.CACHE_BYTES, "cpu", 64 * 1024)
    for seed in range(20):
        unit_noise(seed, 0, (3, 16, 16), 0, 2, torch.device("cpu"))  # 6 KB each
    assert sum(noise._cache_bytes.values()) <= 64 * 1024
    unit_noise(99, 0, (3, 64, 64), 0, 8, torch.device("cpu"))  # too big to keep
    assert all(k[0] != 99 for k in noise._cache)
    clear_cache()


def test_forward_no_grad_matches_the_model():
    model = small_cnn()
    x = images(3)
    stats = Stats()
    out = forward_no_grad(model, x, stats, Options(batch_size=2))  # chunks of 2 + 1
    with torch.no_grad():
        assert torch.allclose(out, model(x), atol=1e-6)
    assert stats.forwards == 3


def test_stop_interrupts_a_cam_run_between_chunks():
    """CAM passes go through the stream like gradients: Stop ends them between chunks."""
    model = small_cnn()
    x = images(4)
    seen = []
    with pytest.raises(CancelledError):
        sc.attribute(model, x, "gradcam", batch_size=1, progress=lambda d, t: seen.append(d),
                     cancel=lambda: len(seen) > 2)
    assert seen == [0, 1, 2]


def test_forward_passes_are_retried_smaller_on_out_of_memory():
    model = small_cnn()
    x = images(4)
    sizes = []

    def forward(points):
        sizes.append(points.shape[0])
        if points.shape[0] > 1:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return model(points)

    stats = Stats()
    out = forward_no_grad(forward, x, stats)
    with torch.no_grad():
        assert torch.allclose(out, model(x), atol=1e-6)
    assert sizes[:3] == [4, 2, 1] and stats.forwards == 4
