"""Guided Backprop's three ways of applying its rule give one map: the operator-level rule
(relu_rules), ReLU-module hooks, and the native rule on the recorded graph (graph_rule, no
Python in the backward pass). Each faster path is used on a model only once checked there,
and falls back cleanly where it would differ or fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
import torchvision
from support.engine_models import FunctionalCNN, images, max_rel_diff, small_cnn
from torch import nn

import saliency_core as sc
from saliency_core.engine.model_state import model_state
from saliency_core.methods.guided import graph_rule
from saliency_core.methods.guided.backprop import _graph_forward, fast_path

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

NO_TOOLCHAIN = shutil.which("c++") is None or shutil.which("ninja") is None


@pytest.fixture
def native(monkeypatch):
    """The native rule, required where a compiler and ninja exist; its state is restored
    after the test, so a test may turn it off."""
    if not graph_rule.prepare(wait=600, settle=True):
        if NO_TOOLCHAIN:
            pytest.skip("no C++ compiler or ninja: the native guided rule cannot be built here")
        pytest.fail(f"native guided rule unavailable: {graph_rule.unavailable_reason()}")
    for key, value in graph_rule._state.items():
        monkeypatch.setitem(graph_rule._state, key, value)


def native_off(monkeypatch):
    monkeypatch.setitem(graph_rule._state, "status", "failed")
    monkeypatch.setitem(graph_rule._state, "reason", "turned off by the test")


class Unreached(nn.Module):
    """A ReLU whose output the logits do not use: the graph never sees it, the rule does."""

    def __init__(self):
        super().__init__()
        self.net, self.side = small_cnn(), nn.ReLU()

    def forward(self, x):
        self.side(x)  # a side computation, as debugging code leaves behind
        return self.net(x)


class ClampActivation(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).clamp(min=0).mean((2, 3)))


def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def mobilenet_v2():  # ReLU6 (Hardtanh) throughout
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=10).eval()


def every_path(model, x, target, monkeypatch, method="guided_backprop", **params):
    """The map from each path in turn on one model, with the verdicts reached."""
    maps = {}
    with monkeypatch.context() as m:
        native_off(m)
        maps["rule"] = sc.attribute(model, x, method, target=target, **params)  # checks hooks
        maps["hooks"] = sc.attribute(model, x, method, target=target, **params)
    maps["rule again"] = sc.attribute(model, x, method, target=target, **params)  # checks graph
    maps["graph"] = sc.attribute(model, x, method, target=target, **params)
    return maps, dict(model_state(model)["guided_paths"])


@pytest.mark.slow
@pytest.mark.parametrize("make, size", [(resnet18, 32), (mobilenet_v2, 32),
                                        (lambda: FunctionalCNN(small_cnn()).eval(), 16),
                                        (lambda: small_cnn(inplace=True), 16)])
def test_the_native_rule_gives_the_previous_map_bit_for_bit(native, monkeypatch, make, size):
    model = make()
    maps, verdicts = every_path(model, images(2, size=size), [1, 3], monkeypatch)
    assert verdicts["graph"] is True
    assert fast_path(model) == "graph"
    for name, got in maps.items():
        assert torch.equal(got, maps["rule"]), name
    # Functional ReLUs defeat the module hooks, not the graph rule.
    assert verdicts["hooks"] is (not isinstance(model, FunctionalCNN))


def rectifiers_above_layer(model, x, layer):
    store = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: store.setdefault("a", out))
    since = graph_rule.pass_start()
    logits = model(x.clone().requires_grad_(True))
    handle.remove()
    return graph_rule.rectifiers_above(logits, store["a"], since)


# A layer with no ReLU after it (one backward pass gives both maps) and one with ReLUs after
# it (a plain pass to the layer, then the guided pass).
@pytest.mark.slow
@pytest.mark.parametrize("make, layer, size, above", [(resnet18, "layer4", 32, 0),
                                                      (mobilenet_v2, "features.18", 32, 0),
                                                      (small_cnn, "features.2", 16, 2)])
def test_guided_gradcam_through_the_native_rule_matches_its_two_pass_form(native, monkeypatch,
                                                                          make, layer, size, above):
    model = make()
    x = images(2, size=size)
    assert rectifiers_above_layer(model, x, layer) == above
    maps, verdicts = every_path(model, x, [1, 3], monkeypatch, "guided_gradcam", layer=layer)
    assert verdicts["graph"] is True
    gb = sc.attribute(model, x, "guided_backprop", target=[1, 3])
    cam = sc.attribute(model, x, "gradcam", target=[1, 3], layer=layer)
    for name, got in maps.items():
        assert max_rel_diff(got, gb * cam[:, None]) < 1e-6, name
    assert torch.equal(maps["graph"], maps["hooks"])


def test_where_the_graph_would_differ_the_previous_paths_stay(native, monkeypatch):
    x = images(2)
    unreached = Unreached().eval()
    reference = sc.attribute(unreached, x, "guided_backprop", target=1)  # checks the graph
    assert model_state(unreached)["guided_paths"] == {"graph": False}
    assert torch.equal(sc.attribute(unreached, x, "guided_backprop", target=1), reference)
    assert fast_path(unreached) == "hooks"  # checked on that second call: they count it
    assert torch.equal(sc.attribute(unreached, x, "guided_backprop", target=1), reference)

    clamped = ClampActivation().eval()  # clamp's own backward gates differently: not rectified
    first = sc.attribute(clamped, x, "guided_backprop", target=1)
    second = sc.attribute(clamped, x, "guided_backprop", target=1)
    assert model_state(clamped)["guided_paths"] == {"graph": False, "hooks": False}
    assert fast_path(clamped) is None
    assert torch.equal(first, second)
    assert torch.equal(first, sc.attribute(clamped, x, "guided_backprop", target=1))


@pytest.mark.slow
def test_a_failing_native_rule_turns_itself_off_and_the_map_is_unchanged(native, monkeypatch):
    model, x = resnet18(), images(2, size=32)
    reference = sc.attribute(model, x, "guided_backprop", target=[1, 3])
    assert fast_path(model) == "graph"
    ggc = sc.attribute(model, x, "guided_gradcam", target=[1, 3])

    def broken(*_args):
        raise RuntimeError("simulated: a library built for another torch")

    monkeypatch.setattr(torch.ops.saliency_graph_rule, "rectify_graph", broken)
    assert torch.equal(sc.attribute(model, x, "guided_backprop", target=[1, 3]), reference)
    assert not graph_rule.ready() and "simulated" in graph_rule.unavailable_reason()
    assert model_state(model)["guided_paths"]["graph"] is True  # the model was not at fault
    assert torch.equal(sc.attribute(model, x, "guided_backprop", target=[1, 3]), reference)
    assert fast_path(model) == "hooks"
    assert torch.equal(sc.attribute(model, x, "guided_gradcam", target=[1, 3]), ggc)

    fresh = resnet18()  # with the native rule failing before any check, and in Guided Grad-CAM
    monkeypatch.setitem(graph_rule._state, "status", "ready")
    assert torch.equal(sc.attribute(fresh, x, "guided_gradcam", target=[1, 3]), ggc)
    assert not graph_rule.ready()


def test_the_backward_pass_calls_no_python(native):
    model, x = resnet18(), images(1, size=32).requires_grad_(True)
    forward = _graph_forward(model)
    logits = forward(x)
    assert forward.relu_calls == 17  # the stem's ReLU and two per basic block, 8 blocks
    called: list[str] = []

    def profile(frame, event, _arg):
        if event in ("call", "c_call"):
            called.append(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        (g,) = torch.autograd.grad(logits[0, 3], x)
    finally:
        sys.setprofile(None)
    assert g.abs().sum() > 0
    assert not [f for f in called if "saliency_core" in f or "/nn/" in f]
    # What Python runs is torch.autograd.grad's own setup, a handful of frames whatever the
    # model: nothing per activation (the module hooks' path adds one call per ReLU).
    assert len(called) < 40, len(called)


@pytest.mark.slow
def test_the_native_rule_leaves_the_shared_model_alone_under_concurrent_calls(native):
    model, x = resnet18(), images(1, size=32)
    solo = sc.attribute(model, x, "guided_backprop", target=2)
    solo = sc.attribute(model, x, "guided_backprop", target=2)  # through the graph
    assert fast_path(model) == "graph"
    params = {k: v.clone() for k, v in model.state_dict().items()}
    got, errors = [], []

    def worker():
        try:
            for _ in range(3):
                got.append(sc.attribute(model, x, "guided_backprop", target=2))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    # Concurrent CPU kernels split their work differently (the plain gradient differs by
    # about 4e-7 too): equal to float tolerance, not bit for bit.
    assert len(got) == 9 and all(max_rel_diff(g, solo) < 1e-5 for g in got)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(torch.equal(v, params[k]) for k, v in model.state_dict().items())


FALLBACK_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from support.engine_models import images, small_cnn
import saliency_core as sc
from saliency_core.methods.guided import graph_rule
from saliency_core.methods.guided.backprop import fast_path
model = small_cnn(inplace=True)
maps = [sc.attribute(model, images(), "guided_backprop", target=1) for _ in range(2)]
print(graph_rule.prepare(wait=120, settle=True), fast_path(model), "|", graph_rule.unavailable_reason())
torch.save(maps[1], {out!r})
"""


@pytest.mark.slow
@pytest.mark.parametrize("env", [{"SALIENCY_NATIVE_RULES": "0"}, {"PATH": "/nonexistent"}])
def test_without_the_native_rule_the_python_paths_give_the_map(native, tmp_path, env):
    """Turned off, or with no compiler to build it (a fresh extension cache, nothing on PATH):
    the process says why and Guided Backprop goes through the module hooks."""
    tests = str(Path(__file__).parent)
    script = FALLBACK_SCRIPT.format(tests=tests, out=str(tmp_path / "map.pt"))
    run_env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext"), **env,
               "PYTHONPATH": str(Path(tests).parent), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=run_env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    status, _, reason = done.stdout.strip().splitlines()[-1].partition(" | ")
    assert status == "False hooks"
    assert ("SALIENCY_NATIVE_RULES" in reason) if "SALIENCY_NATIVE_RULES" in env else reason
    model = small_cnn(inplace=True)
    expected = sc.attribute(model, images(), "guided_backprop", target=1)
    assert torch.equal(torch.load(tmp_path / "map.pt"), expected)
