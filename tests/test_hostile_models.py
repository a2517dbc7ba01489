"""Bring-your-own models: scoped to the uploading session, never replacing another's, capped,
dropped with the session; weights of the wrong type or with NaN/inf refused; pickles of every
extension refused without ever being unpickled."""

from __future__ import annotations

import gc
import io
import os
import pickle
import weakref

import pytest
import torch
import torchvision
from safetensors.torch import save
from streamlit.testing.v1 import AppTest
from support.apptest import shown
from support.browser import REPO_ROOT

from saliency_core import attribute
from saliency_core.errors import SaliencyError
from saliency_core.models import available_models, registration, registry
from workbench.jobs import compute
from workbench.jobs.visitor import Visitor

ARCH = "mobilenet_v3_large"


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_large(num_classes=3).state_dict()


@pytest.fixture(autouse=True)
def clean_registry():
    yield
    for owner in ("alice", "bob", "carol"):
        registry.drop_owner(owner)


def upload(state, owner, name=None):
    return registration.load_uploaded_weights(ARCH, save(state), 3, name=name, device="cpu", owner=owner)


def names_for(owner):
    return {m.name for m in available_models(owner) if m.source == "uploaded"}


def test_uploads_are_listed_to_their_owner_only(state):
    loaded = upload(state, "alice", "alice-net")
    assert "alice-net" in names_for("alice")
    assert "alice-net" not in names_for("bob") and "alice-net" not in names_for(None)
    assert loaded.name == "alice-net"


def test_a_name_in_use_is_refused_not_replaced(state):
    first = upload(state, "alice", "same-name")
    with pytest.raises(SaliencyError, match="already in use"):
        upload(state, "bob", "same-name")
    assert registry.load_model("same-name", "cpu") is first
    # The owner may replace their own.
    again = upload({**state}, "alice", "same-name")
    assert registry.load_model("same-name", "cpu") is again


def test_the_same_file_in_two_sessions_gives_two_models(state):
    a = upload(state, "alice")
    b = upload(state, "bob")
    assert a.name != b.name and b.name.startswith(a.name)
    assert a.name in names_for("alice") and b.name in names_for("bob")


@pytest.mark.slow
def test_resident_uploads_are_capped(state, monkeypatch):
    monkeypatch.setenv(registry.MAX_OWNED_ENV, "3")
    upload(state, "alice", "a1")
    upload(state, "alice", "a2")
    with pytest.raises(SaliencyError, match="most one session may keep"):
        upload(state, "alice", "a3")
    upload(state, "bob", "b1")
    with pytest.raises(SaliencyError, match="its limit"):
        upload(state, "carol", "c1")


def test_dropping_the_owner_frees_the_weights(state):
    loaded = upload(state, "alice", "to-drop")
    alive = weakref.ref(loaded.model)
    del loaded
    registry.drop_owner("alice")
    gc.collect()
    assert alive() is None
    assert "to-drop" not in names_for("alice")


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.bool])
def test_integer_weights_are_refused(state, dtype):
    bad = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    with pytest.raises(SaliencyError, match="not floating point"):
        upload(bad, "alice")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(state, value):
    bad = dict(state)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 4)
    bad[key] = state[key].clone()
    bad[key].view(-1)[7] = value
    with pytest.raises(SaliencyError, match="NaN or infinite") as error:
        upload(bad, "alice")
    assert key in str(error.value)


def test_half_precision_weights_are_accepted(state):
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    assert upload(half, "alice", "half-net").name == "half-net"


@pytest.mark.parametrize("name", ["x" * 81, "evil\u202ename", "tab\tname", "nul\x00"])
def test_hostile_model_names_are_refused(state, name):
    with pytest.raises(SaliencyError, match="model name"):
        upload(state, "alice", name)


def test_overlong_class_names_are_refused(state):
    with pytest.raises(SaliencyError, match="at most 200 characters"):
        registration.load_uploaded_weights(ARCH, save(state), 3, labels=["a", "b", "c" * 201],
                                  owner="alice")


class _Payload:
    """Unpickling this creates a folder: the proof that nothing was unpickled is its absence."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt", ".pkl"])
def test_pickles_of_every_extension_are_refused_unopened(tmp_path, suffix):
    marker = tmp_path / f"unpickled{suffix}"
    raw = pickle.dumps(_Payload(str(marker)))
    buffer = io.BytesIO()
    torch.save({"weight": _Payload(str(marker))}, buffer)
    for data in (raw, buffer.getvalue()):
        with pytest.raises(SaliencyError, match="not a readable safetensors file"):
            registration.load_uploaded_weights(ARCH, data, 3, owner="alice")
    assert not marker.exists()


def _upload_in_a_session(state, name) -> AppTest:
    at = AppTest.from_file(str(REPO_ROOT / "pages" / "models.py"), default_timeout=120).run()
    at.selectbox(key="models.arch").set_value(ARCH)
    at.number_input(key="models.classes").set_value(3)
    at.text_input(key="models.name").set_value(name)
    at.file_uploader(key="models.weights").upload("w.safetensors", save(state))
    at.button(key="models.load").click().run()
    assert not at.exception
    return at


@pytest.mark.slow
def test_models_page_keeps_uploads_to_the_session(state):
    alice = _upload_in_a_session(state, "page-net")
    try:
        assert any("page-net" in shown(s.value) for s in alice.success)
        bob = AppTest.from_file(str(REPO_ROOT / "pages" / "image.py"), default_timeout=120).run()
        assert "page-net" not in bob.selectbox(key="image.model").options
        bob_upload = _upload_in_a_session(state, "page-net")
        assert any("already in use" in shown(e.value) for e in bob_upload.error)
        alice.button(key="models.remove_uploads").click().run()
        assert "page-net" not in registry.owned_names(
            alice.session_state["_uploads.owner"].value)
    finally:
        registry.unregister_uploaded("page-net")


@pytest.mark.slow
def test_results_of_replaced_weights_are_never_served_from_the_cache(state):
    """The result cache is keyed by the upload's weights, not its name: after the owner
    replaces their model under the same name, the page computes with the new weights."""
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64)
    digest = compute.pixels_digest(x.numpy())
    first = upload(state, "alice", "alice-net")
    before = compute.explain_image(Visitor.anonymous(), first,
                                   compute.image_computation(first, "cpu", digest, "gradient", {}, 0), x)
    changed = {k: (v + 0.05 if v.is_floating_point() else v) for k, v in state.items()}
    second = upload(changed, "alice", "alice-net")
    after = compute.explain_image(Visitor.anonymous(), second,
                                  compute.image_computation(second, "cpu", digest, "gradient", {}, 0), x)
    assert not torch.equal(torch.from_numpy(before.attribution), torch.from_numpy(after.attribution))
    direct = attribute(second, x, "gradient", target=0)
    torch.testing.assert_close(torch.from_numpy(after.attribution), direct[0])
