"""The model cache filled from a deployment's model source (models/deployment_source.py):
weights put into an S3 bucket (a real S3 API: moto's server mode) or onto a read-only volume,
then ``load_model`` on a machine with an empty local cache copies them in and loads them."""

from __future__ import annotations

import shutil
import stat

import boto3
import pytest
import torch
from support.s3server import BUCKET, s3_server
from test_models_hf import COMMIT, logits, save_tiny_classifier

from saliency_core.errors import ModelUnavailableError
from saliency_core.models import (
    available_models,
    forget_loaded,
    hf_text,
    load_model,
)
from saliency_core.models import deployment_source as source
from saliency_core.models import torchvision_zoo as tv
from saliency_core.models.cache import cache_root

TEXT_MODEL = "textattack/bert-base-uncased-SST-2"
IMAGE_MODEL = "mobilenet_v3_large"  # the zoo's smallest torchvision checkpoint (22 MB)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty local cache and no loaded models, before and after."""
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path / "local-cache"))
    monkeypatch.delenv(source.SOURCE_ENV, raising=False)
    forget_loaded()
    source.forget_listing()
    yield tmp_path / "local-cache"
    forget_loaded()
    source.forget_listing()


def build_cache(folder, monkeypatch):
    """What `python -m saliency_core fetch` leaves in a cache root: a torchvision checkpoint
    and a Hugging Face snapshot. Returns the reference models."""
    monkeypatch.setenv("SALIENCY_CACHE", str(folder))
    torch.manual_seed(0)
    image = tv.build_architecture(IMAGE_MODEL, 1000).eval()
    tv.checkpoint_path(IMAGE_MODEL).parent.mkdir(parents=True)
    torch.save(image.state_dict(), tv.checkpoint_path(IMAGE_MODEL))
    repo = hf_text.repo_cache_dir(hf_text.HUB_MODELS[TEXT_MODEL].repo_id)
    text = save_tiny_classifier(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return image, text


def upload(folder, env, prefix: str) -> None:
    s3 = boto3.client("s3", endpoint_url=env["SALIENCY_S3_ENDPOINT_URL"],
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    for path in folder.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_weights_in_the_bucket_reach_a_fresh_local_cache(fresh, tmp_path, monkeypatch):
    with s3_server(prefix="unused") as s3_env:
        bucket_to_fresh_cache(s3_env, fresh, tmp_path, monkeypatch)


def bucket_to_fresh_cache(s3_env, fresh, tmp_path, monkeypatch):
    image, text = build_cache(tmp_path / "filled", monkeypatch)
    upload(tmp_path / "filled", s3_env, "team/models")
    monkeypatch.setenv("SALIENCY_CACHE", str(fresh))
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(source.SOURCE_ENV, f"s3://{BUCKET}/team/models")
    assert not tv.is_present(IMAGE_MODEL)

    listed = {m.name: m for m in available_models()}
    assert listed[IMAGE_MODEL].present and listed[TEXT_MODEL].present
    assert not listed["resnet50"].present  # not in the bucket: still missing

    loaded = load_model(IMAGE_MODEL, "cpu")
    assert same_weights(loaded.model, image)
    assert tv.checkpoint_path(IMAGE_MODEL).is_file()  # the local copy
    loaded_text = load_model(TEXT_MODEL, "cpu")
    out, batch = logits(loaded_text)
    with torch.no_grad():
        torch.testing.assert_close(out, text(**batch).logits)
    # The Hugging Face copy holds the snapshot only (blobs/ would double it), no temp files.
    copied = [p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()]
    assert not [p for p in copied if p.endswith(".part") or "/blobs/" in p]

    # Later loads use the local copy: the bucket can be gone.
    forget_loaded()
    monkeypatch.setenv(source.SOURCE_ENV, f"s3://{BUCKET}/no-such-prefix")
    assert same_weights(load_model(IMAGE_MODEL, "cpu").model, image)


def test_a_read_only_volume_is_a_source_too(fresh, tmp_path, monkeypatch):
    volume = tmp_path / "volume"
    _, text = build_cache(volume, monkeypatch)
    for path in [volume, *volume.rglob("*")]:  # mounted read-only
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        monkeypatch.setenv("SALIENCY_CACHE", str(fresh))
        monkeypatch.setenv(source.SOURCE_ENV, str(volume))
        loaded = load_model(TEXT_MODEL, "cpu")
        out, batch = logits(loaded)
        with torch.no_grad():
            torch.testing.assert_close(out, text(**batch).logits)
        assert hf_text.is_present(hf_text.HUB_MODELS[TEXT_MODEL])
        assert cache_root() == fresh and (fresh / "hf" / "hub").is_dir()  # copied, not read in place
    finally:
        for path in [volume, *volume.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(volume)


def test_an_unreadable_source_is_named_and_the_model_list_still_draws(fresh, monkeypatch):
    monkeypatch.setenv(source.SOURCE_ENV, "s3://saliency-test/models")
    monkeypatch.setenv("SALIENCY_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert not {m.name: m for m in available_models()}[IMAGE_MODEL].present
    with pytest.raises(ModelUnavailableError, match="model source s3://saliency-test/models"):
        load_model(IMAGE_MODEL, "cpu")


@pytest.mark.parametrize("listed, kept", [
    ("torch/hub/checkpoints/a.pth", "torch/hub/checkpoints/a.pth"),
    ("../../etc/passwd", None),
    ("hf/hub/models--a--b/blobs/0123", None),
    ("hf/hub/models--a--b/snapshots/c/config.json", "hf/hub/models--a--b/snapshots/c/config.json"),
    ("torch/x/../../../outside", None),
    ("torch/a.pth.part", None),
])
def test_listed_paths_stay_inside_the_cache(listed, kept):
    assert source.safe_relative(listed) == kept
