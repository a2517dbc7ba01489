"""Bring your own weights: a size limit of their own (the server's upload cap, far above the
images'), half-precision files converted to float32 on load, what the Models page says can be
brought, and the server-side size checks a client that skips the browser's meets."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save
from streamlit import config
from streamlit.testing.v1 import AppTest
from support.browser import REPO_ROOT

from saliency_core.errors import SaliencyError
from saliency_core.models import byo, torchvision_zoo
from workbench.hosting import uploads

TIMEOUT = 120


def models_page() -> AppTest:
    at = AppTest.from_file(str(REPO_ROOT / "pages/models.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def server_cap():
    """Set server.maxUploadSize for one test, as STREAMLIT_SERVER_MAX_UPLOAD_SIZE would."""
    before = config.get_option("server.maxUploadSize")

    def set_cap(mb: int) -> None:
        config.set_option("server.maxUploadSize", mb)

    yield set_cap
    config.set_option("server.maxUploadSize", before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_load_as_float32_with_the_same_predictions(dtype):
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=10).eval()
    half = {k: (v.to(dtype) if v.is_floating_point() else v)
            for k, v in original.state_dict().items()}
    model = byo.build_uploaded("resnet18", save(half), 10)
    assert {t.dtype for t in model.state_dict().values() if t.is_floating_point()} == {
        torch.float32}
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        expected, got = original(x), model(x)
    # Half precision keeps ~3 significant digits (bfloat16 ~2): the logits agree to that.
    tolerance = (1e-2 if dtype == torch.float16 else 5e-2) * float(expected.abs().max())
    assert float((got - expected).abs().max()) <= tolerance
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_weights_take_the_server_cap_and_labels_their_own_small_limit():
    at = models_page()
    weights = at.file_uploader(key="models.weights").proto.max_upload_size_mb
    assert weights == config.get_option("server.maxUploadSize") >= 400
    assert weights > uploads.image_limit_mb()
    assert at.file_uploader(key="models.labels").proto.max_upload_size_mb == uploads.LABELS_MB


def test_weights_limit_follows_the_server_setting_and_images_keep_theirs(server_cap):
    server_cap(800)
    at = models_page()
    assert at.file_uploader(key="models.weights").proto.max_upload_size_mb == 800
    assert uploads.image_limit_mb() == uploads.DEFAULT_IMAGE_MB == 25
    # An image limit above the server's cap would let the browser send what the server refuses.
    server_cap(10)
    assert uploads.image_limit_mb() == 10


def test_models_page_says_what_can_be_brought_and_how():
    at = models_page()
    text = " ".join(m.value for m in (*at.markdown, *at.caption, *at.info))
    for arch in torchvision_zoo.ARCHITECTURES:
        assert arch in text, arch
    limit = config.get_option("server.maxUploadSize")
    for fragment in ("safetensors", "state_dict", "float16", "bfloat16", "float32",
                     f"{limit} MB", "this browser session", "timm", "Hugging Face",
                     "hf:"):
        assert fragment.lower() in text.lower(), fragment


def test_an_oversized_labels_file_is_refused_on_the_server():
    # A client that skips the browser's check reaches the server with anything up to its cap.
    at = models_page()
    at.selectbox(key="models.arch").set_value("mobilenet_v3_large")
    at.number_input(key="models.classes").set_value(3)
    at.file_uploader(key="models.weights").upload("w.safetensors", b"unread")
    at.file_uploader(key="models.labels").upload(
        "labels.txt", b"x\n" * (uploads.LABELS_MB * 2**20), "text/plain")
    at.button(key="models.load").click().run()
    assert not at.exception
    assert any("labels file" in e.value and f"{uploads.LABELS_MB} MB" in e.value
               for e in at.error), [e.value for e in at.error]


def test_an_image_over_its_limit_is_refused_before_it_is_read_or_stored(monkeypatch):
    from workbench.ui import inputs

    monkeypatch.setenv(uploads.IMAGE_LIMIT_ENV, "1")

    class NoStore:
        def put(self, data):
            raise AssertionError("an oversized upload was stored")

    with pytest.raises(SaliencyError, match="1 MB"):
        inputs.from_upload(b"\x89PNG" + bytes(2**20), NoStore())
