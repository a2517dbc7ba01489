"""Shared state for app replicas: the share store and the result cache on both storage
backends, the object storage one against a real S3 API (moto's server mode)."""

from __future__ import annotations

import numpy as np
import pytest
from support.s3server import s3_server

from workbench.hosting import storage
from workbench.hosting.share import ShareLinkError, ShareStore, digest_of
from workbench.jobs.results import (
    ImageResult,
    ResultCache,
    SanityResult,
    Scoreboard,
    TextResult,
    configured_cache,
)


@pytest.fixture(scope="module")
def s3_env():
    with s3_server(prefix="unit") as env:
        yield env


@pytest.fixture
def s3(s3_env, monkeypatch):
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    return s3_env


def image_result(seed: int = 0) -> ImageResult:
    rng = np.random.default_rng(seed)
    return ImageResult(attribution=rng.standard_normal((3, 8, 8)).astype(np.float32),
                       probabilities=rng.dirichlet(np.ones(6)), target=2, predicted=4,
                       metadata={"method": "integrated_gradients", "time_s": 0.1 + seed,
                                 "completeness_delta": [1e-7], "params": {"steps": 32}})


def test_object_storage_backend_is_chosen_by_the_bucket_setting(s3, tmp_path):
    backend = storage.storage_for("shares", tmp_path)
    assert isinstance(backend, storage.ObjectStorage)
    assert backend.describe() == "s3://saliency-test/unit/shares"


def test_local_backend_is_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("SALIENCY_S3_BUCKET", raising=False)
    backend = storage.storage_for("shares", tmp_path)
    assert isinstance(backend, storage.LocalStorage) and backend.root == tmp_path
    assert storage.storage_for("results", None) is None


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_storage_round_trip_listing_and_pruning(backend, request, tmp_path):
    if backend == "s3":
        request.getfixturevalue("s3")
        store = storage.storage_for(f"prune-{tmp_path.name}", None)
    else:
        store = storage.LocalStorage(tmp_path)
    store.write("a.bin", b"a" * 100)
    store.write("b.bin", b"b" * 100)
    assert store.read("a.bin") == b"a" * 100 and store.exists("b.bin")
    with pytest.raises(KeyError):
        store.read("missing.bin")
    with pytest.raises(ValueError):
        store.read("../escape")
    assert sorted((e.key, e.size) for e in store.entries()) == [("a.bin", 100), ("b.bin", 100)]
    store.write("c.bin", b"c" * 100)
    assert store.prune(250, keep="c.bin") == 1
    assert len(store.entries()) == 2 and store.exists("c.bin")


def test_a_link_made_on_one_replica_opens_on_another(s3):
    # Two stores built from the same configuration: what two app processes would build.
    first, second = ShareStore(), ShareStore()
    digest = first.put(b"uploaded picture")
    assert digest == digest_of(b"uploaded picture")
    assert second.get(digest) == b"uploaded picture"
    with pytest.raises(ShareLinkError, match="does not have"):
        second.get("b" * 64)
    # Tampering with the stored object is noticed on read, as with the folder.
    second.storage.write(f"{digest}.bin", b"tampered")
    with pytest.raises(ShareLinkError, match="damaged"):
        first.get(digest)


def test_storage_that_is_down_gives_a_message_not_a_hang(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_S3_BUCKET", "nowhere")
    monkeypatch.setenv("SALIENCY_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    with pytest.raises(ShareLinkError, match="cannot be read right now"):
        ShareStore().get("c" * 64)
    cache = configured_cache()
    cache.put("k", image_result())  # the memory tier keeps it; the failure is only logged
    assert cache.get("k") is not None
    # For a while after a failure the shared tier is not even tried (a store that is down
    # must not add its timeouts to every run), even if it is back.
    cache.store = storage.LocalStorage(tmp_path)
    cache.put("k2", image_result(2))
    assert cache.store.entries() == []


def test_result_cache_shares_exact_results_between_replicas(s3):
    one, two = configured_cache(), configured_cache()
    image = image_result(1)
    text = TextResult(tokens=["[CLS]", "good", "[SEP]"], special=[True, False, True],
                      scores=np.array([0.0, 0.75, 0.0]), probabilities=np.array([0.2, 0.8]),
                      target=1, predicted=1, metadata={"aggregation": "sum"})
    board = Scoreboard(rows=[{"method": "gradient", "deletion_auc": 0.25}])
    for key, value in (("img", image), ("txt", text), ("board", board)):
        one.put(key, value)
    got = two.get("img")
    assert two.shared_hits == 1
    assert got.attribution.dtype == np.float32
    assert np.array_equal(got.attribution, image.attribution)
    assert np.array_equal(got.probabilities, image.probabilities)
    assert (got.target, got.predicted, got.metadata) == (2, 4, image.metadata)
    got_text = two.get("txt")
    assert got_text.tokens == text.tokens and got_text.special == text.special
    assert np.array_equal(got_text.scores, text.scores)
    assert two.get("board").rows == board.rows
    assert two.get("never computed") is None and two.misses == 1


def test_result_cache_local_folder_tier_and_damaged_entries(tmp_path):
    store = storage.LocalStorage(tmp_path)
    ResultCache(10_000_000, store=store).put("k", image_result())
    fresh = ResultCache(10_000_000, store=store)
    assert np.array_equal(fresh.get("k").attribution, image_result().attribution)
    for entry in store.entries():
        store.write(entry.key, b"\x00garbage")
    assert ResultCache(10_000_000, store=store).get("k") is None  # a miss, not a crash


@pytest.mark.slow
def test_sanity_results_are_stored_in_the_shared_tier_bit_for_bit(tmp_path):
    import saliency_core
    from saliency_core import evaluation

    loaded = saliency_core.load_model("shapes-cnn", "cpu")
    x, _ = evaluation.shapes_inputs(loaded, 2, 0)
    cascade = evaluation.cascading_randomization(loaded, x, ["gradient", "gradcam"], seed=1)
    data = evaluation.data_randomization(loaded, loaded, x, ["gradient"])
    store = storage.LocalStorage(tmp_path)
    ResultCache(100_000_000, store=store).put("sanity", SanityResult(cascade, data))
    got = ResultCache(100_000_000, store=store).get("sanity")
    assert isinstance(got, SanityResult)
    assert (got.cascade.mode, got.cascade.steps, got.cascade.seed) == ("cascading", cascade.steps, 1)
    assert got.cascade.units == cascade.units and np.array_equal(got.cascade.targets, cascade.targets)
    for method in cascade.methods:
        for metric, values in cascade.similarity[method].items():
            assert np.array_equal(got.cascade.similarity[method][metric], values)
        for mine, theirs in zip(got.cascade.maps[method], cascade.maps[method]):
            assert mine.abs.dtype == np.float32 and np.array_equal(mine.abs, theirs.abs)
            assert np.array_equal(mine.signed, theirs.signed)
    assert got.cascade.verdicts(0.5) == cascade.verdicts(0.5)
    assert got.data.verdicts() == data.verdicts()
    assert np.array_equal(got.data.maps["gradient"][1].abs, data.maps["gradient"][1].abs)

