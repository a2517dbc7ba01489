"""Fetching weights for real, against a local server that serves files as download.pytorch.org
and huggingface.co do: configurable mirrors, verified and atomic downloads, clean retries,
and a clear message (with nothing left behind) when the host cannot be reached."""

from __future__ import annotations

import hashlib
import shutil
import socket

import pytest
import torch
from support.hub_mirror import HubMirror

from saliency_core.errors import ModelUnavailableError
from saliency_core.models import efficientnet_lite, forget_loaded, torchvision_zoo
from saliency_core.models.cache import cache_root

LITE0 = efficientnet_lite.weights_path("efficientnet-lite0")  # a real hash-named checkpoint


pytestmark = pytest.mark.usefixtures("temp_cache")  # tests/conftest.py


@pytest.fixture
def mirror():
    with HubMirror() as server:
        yield server


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_torchvision_weights_come_from_the_configured_mirror_and_are_hash_checked(
        mirror, monkeypatch, temp_cache):
    monkeypatch.setenv(torchvision_zoo.MIRROR_ENV, mirror.url + "/models")
    name = torchvision_zoo.checkpoint_path("resnet18").name
    assert torchvision_zoo.download_url("resnet18") == f"{mirror.url}/models/{name}"
    # The mirror holds bytes that are not the official checkpoint: the hash in the file name
    # rejects them, and nothing is left in the cache.
    mirror.torch_files[name] = torch.zeros(1000).numpy().tobytes()
    with pytest.raises(ModelUnavailableError, match="invalid hash value"):
        torchvision_zoo.fetch("resnet18", progress=False)
    assert ("GET", f"/models/{name}") in mirror.requests
    assert files_under(temp_cache) == []


def test_a_download_cut_short_leaves_nothing_and_the_retry_succeeds(mirror, temp_cache):
    data = LITE0.read_bytes()
    mirror.torch_files[LITE0.name] = data
    mirror.cut_next[f"/models/{LITE0.name}"] = 1
    target = temp_cache / "torch" / "hub" / "checkpoints" / LITE0.name
    with pytest.raises(Exception):  # noqa: B017 - whatever urllib raises for a dropped body
        torchvision_zoo.download_checkpoint(f"{mirror.url}/models/{LITE0.name}", target, False)
    assert files_under(temp_cache) == []  # no partial file, no empty folders
    torchvision_zoo.download_checkpoint(f"{mirror.url}/models/{LITE0.name}", target, False)
    assert target.read_bytes() == data and files_under(target.parent) == [LITE0.name]


def test_offline_torchvision_fetch_says_what_to_do_and_leaves_no_folders(monkeypatch, temp_cache):
    monkeypatch.setenv(torchvision_zoo.MIRROR_ENV, closed_port_url())
    with pytest.raises(ModelUnavailableError) as caught:
        torchvision_zoo.fetch("resnet18", progress=False)
    message = str(caught.value)
    assert "no network access" in message and torchvision_zoo.MIRROR_ENV in message
    assert "python -m saliency_core fetch resnet18" in message
    assert "torch/hub/checkpoints/resnet18-f37072fd.pth" in message
    assert str(cache_root()) in message
    assert files_under(temp_cache) == []


REPO = "textattack/bert-base-uncased-SST-2"  # a zoo name; the mirror holds a tiny stand-in


def mirror_repo(mirror, tmp_path):
    from test_models_hf import save_tiny_classifier

    folder = tmp_path / "upstream"
    model = save_tiny_classifier(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    files["pytorch_model.bin"] = b"an older copy of the weights that must not be fetched"
    files["README.md"] = b"# not needed to run the model\n"
    mirror.repos[REPO] = files
    return model, files


def test_hugging_face_models_come_from_hf_endpoint_verified_and_complete(
        mirror, monkeypatch, tmp_path, temp_cache):
    from test_models_hf import logits

    from saliency_core.models import hf_text, load_model

    model, files = mirror_repo(mirror, tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    weights = "/cdn/" + hashlib.sha256(files["model.safetensors"]).hexdigest()
    mirror.cut_next[weights] = 1  # the connection drops half way: the downloader retries
    hf_text.fetch(REPO)
    assert mirror.requests.count(("GET", weights)) == 2
    forget_loaded()
    shutil.rmtree(temp_cache)
    mirror.fail_next[weights] = 1  # the CDN has a bad moment: the fetch fails and says so
    with pytest.raises(ModelUnavailableError, match="run the fetch again"):
        hf_text.fetch(REPO)
    hf_text.fetch(REPO)  # run again: it completes
    snapshot = hf_text.snapshot_dir(REPO)
    fetched = sorted(p.name for p in snapshot.iterdir())
    assert "model.safetensors" in fetched and "config.json" in fetched
    assert "pytorch_model.bin" not in fetched and "README.md" not in fetched
    for name in fetched:
        assert (snapshot / name).read_bytes() == files[name]
    assert not list(temp_cache.rglob("*.incomplete"))
    # The LFS file came through the CDN redirect, as from huggingface.co.
    assert any(path.startswith("/cdn/") for _, path in mirror.requests)
    loaded = load_model(REPO, "cpu")
    expected, batch = logits(loaded)
    with torch.no_grad():
        torch.testing.assert_close(expected, model(**batch).logits)


def test_offline_hugging_face_fetch_says_what_to_do_and_leaves_no_folders(monkeypatch, temp_cache):
    from saliency_core.models import hf_text

    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    with pytest.raises(ModelUnavailableError) as caught:
        hf_text.fetch(REPO)
    message = str(caught.value)
    assert "no network access" in message and "HF_ENDPOINT" in message
    assert "hf/hub/models--textattack--bert-base-uncased-SST-2" in message
    assert files_under(temp_cache) == []
