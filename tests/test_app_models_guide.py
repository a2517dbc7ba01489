"""The Models, Guide and Home pages and the app's navigation under AppTest."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save
from streamlit.testing.v1 import AppTest
from support.browser import REPO_ROOT

import saliency_core
import saliency_core.models as sc_models
from saliency_core.models import torchvision_zoo
from workbench.ui.plaintext import plain

TIMEOUT = 120


def run_file(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO_ROOT / name), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_models_page_lists_bundled_and_missing_models_with_sizes():
    at = run_file("pages/models.py")
    table = at.dataframe[0].value.set_index("model")
    for name in ("shapes-cnn", "shapes-cnn-watermark", "shapes-cnn-random-labels",
                 "minilm-sentiment"):
        assert table.loc[name, "status"] == "bundled"
        assert table.loc[name, "size"].endswith("MB")
    assert table.loc["resnet50", "status"] in ("not fetched", "cached")
    if table.loc["resnet50", "status"] == "not fetched":
        assert "(download)" in table.loc["resnet50", "size"]


def test_fetch_failure_offline_is_a_clear_message(monkeypatch):
    missing = [i.name for i in sc_models.available_models()
               if i.source == "zoo" and not i.present and i.name in torchvision_zoo.ARCHITECTURES]
    if not missing:
        pytest.skip("every zoo image model is cached here")
    name = missing[0]

    def offline(arch, progress=True):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision_zoo, "fetch", offline)
    at = run_file("pages/models.py")
    at.button(key=f"models.fetch.{name}").click().run()
    assert not at.exception
    message = " ".join(e.value for e in at.error)
    assert f"Could not fetch {name}" in message and "name resolution" in message
    assert "python -m saliency_core fetch" in message


def _weights(num_classes: int) -> bytes:
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_large(num_classes=num_classes)
    return save(model.state_dict())


def test_bring_your_own_weights_loads_and_registers():
    at = run_file("pages/models.py")
    at.selectbox(key="models.arch").set_value("mobilenet_v3_large")
    at.number_input(key="models.classes").set_value(3)
    at.text_input(key="models.name").set_value("test-byo-mobilenet")
    at.file_uploader(key="models.weights").upload("w.safetensors", _weights(3))
    at.file_uploader(key="models.labels").upload("labels.txt", b"cat\ndog\nbird\n", "text/plain")
    at.button(key="models.load").click().run()
    try:
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert any(plain("test-byo-mobilenet") in s.value for s in at.success)
        owner = at.session_state["_uploads.owner"].value
        names = [i.name for i in sc_models.available_models(owner) if i.source == "uploaded"]
        assert "test-byo-mobilenet" in names
        # Another session (or the library without an owner) does not see it.
        assert "test-byo-mobilenet" not in [i.name for i in sc_models.available_models()]
        assert saliency_core.load_model("test-byo-mobilenet", "cpu").labels == ["cat", "dog", "bird"]
    finally:
        sc_models.unregister_uploaded("test-byo-mobilenet")


def test_bring_your_own_with_wrong_file_says_why():
    at = run_file("pages/models.py")
    at.selectbox(key="models.arch").set_value("mobilenet_v3_large")
    at.number_input(key="models.classes").set_value(5)  # the file has 3
    at.file_uploader(key="models.weights").upload("w.safetensors", _weights(3))
    at.button(key="models.load").click().run()
    assert not at.exception
    assert any("does not fit" in e.value and "wrong shape" in e.value for e in at.error)
    at.file_uploader(key="models.weights").set_value(("junk.safetensors", b"not tensors", ""))
    at.button(key="models.load").click().run()
    assert any("not a readable safetensors file" in e.value for e in at.error)


def test_guide_covers_every_method_and_the_choices():
    at = run_file("app.py")  # through the navigation: the guide links to other pages
    at.switch_page("pages/guide.py").run()
    assert not at.exception, [e.value for e in at.exception]
    expanders = [e.label for e in at.expander]
    for spec in saliency_core.methods():
        assert any(label.startswith(spec.label) for label in expanders), spec.label
    text = " ".join(m.value for m in at.markdown)
    for fragment in ("fails the randomization sanity checks", "Guided Grad-CAM",
                     "largely invariant", "completeness", "blur", "pad", "target layer",
                     "Adebayo"):
        assert fragment.lower() in text.lower(), fragment
    headers = [h.value for h in at.header]
    assert "Choosing a baseline (Integrated Gradients)" in headers
    assert "Choosing a target layer (CAM methods)" in headers


@pytest.mark.slow
def test_app_navigation_lists_every_page_and_each_runs():
    at = run_file("app.py")
    assert at.title[0].value == "Saliency workbench"
    pages = ["pages/image.py", "pages/text.py", "pages/compare.py", "pages/models.py",
             "pages/guide.py"]
    if (REPO_ROOT / "pages" / "sanity.py").exists():
        pages.append("pages/sanity.py")
    for page in pages:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert at.title, page
