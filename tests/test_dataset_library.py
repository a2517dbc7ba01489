"""explain_dataset and cluster_maps: compact maps, per-file errors, labels, Stop, the rerun
cache, the measures and spectral clustering with the eigengap."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

import saliency_core as sc
from saliency_core.datasets import (
    DatasetExplanation,
    explain_dataset,
    measures,
    open_images,
)
from saliency_core.engines import LocalEngine
from saliency_core.evaluation import cluster_maps, embed_maps
from saliency_core.training.shapes import generate


@pytest.fixture(scope="module")
def loaded():
    return sc.load_model("shapes-cnn", device="cpu")


@pytest.fixture(scope="module")
def shapes():
    return generate(24, seed=7)


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_maps_are_compact_non_negative_and_match_the_batched_explain(loaded, shapes):
    ds = explain_dataset(loaded, list(shapes.images), "gradient", map_size=16, chunk=5)
    assert isinstance(ds, DatasetExplanation) and len(ds) == 24
    assert ds.maps.shape == (24, 16, 16) and ds.maps.dtype == np.float32
    assert (ds.maps >= 0).all() and (ds.maps.reshape(24, -1).sum(1) > 0).all()
    # The same numbers as one explain over the whole batch, pooled the same way.
    x = __import__("torch").cat([loaded.preprocess(Image.fromarray(a)) for a in shapes.images])
    e = sc.explain(loaded, x, "gradient")
    full = e.attribution.abs().sum(1)
    pooled = full.reshape(24, 16, 4, 16, 4).mean((2, 4)).numpy()
    np.testing.assert_allclose(ds.maps, pooled, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(ds.predicted, e.predicted.numpy())
    np.testing.assert_allclose(ds.probabilities, e.probabilities.numpy(), rtol=1e-5, atol=1e-6)


def test_the_table_has_a_row_per_image_with_truth_and_measures(loaded, shapes):
    names = [["circle", "square", "triangle", "cross", "star", "ring"][int(c)] for c in shapes.labels]
    ds = explain_dataset(loaded, list(shapes.images), "gradcam", labels=names)
    table = ds.table
    assert list(table.columns) == ["file", "predicted", "true", "confidence", "correct",
                                   "concentration", "top10_mass", "border", "corners"]
    assert len(table) == 24 and table["true"].tolist() == names
    assert table["correct"].mean() > 0.9  # shapes-cnn: 99 % on fresh shapes
    assert ((table["confidence"] > 0) & (table["confidence"] <= 1)).all()
    for column in ("concentration", "top10_mass", "border", "corners"):
        assert table[column].between(0, 1).all(), column


def test_bad_files_are_listed_never_raised(loaded, shapes):
    good = _png(shapes.images[0])
    files = [("a.png", good), ("notes.txt", b"hello"), ("cut.png", good[:60]),
             ("b.png", good), ("empty.png", b"")]
    ds = explain_dataset(loaded, files, "gradient")
    assert ds.names == ["a.png", "b.png"]
    problems = {e.file: e.message for e in ds.errors}
    assert set(problems) == {"notes.txt", "cut.png", "empty.png"}
    assert "not an image" in problems["notes.txt"] and "empty" in problems["empty.png"]
    assert "damaged" in problems["cut.png"] or "cut short" in problems["cut.png"]


def test_labels_from_sub_folders_and_from_a_csv(tmp_path, loaded, shapes):
    for i, label in enumerate(["cat", "dog", "cat"]):
        (tmp_path / "f" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "f" / label / f"{i}.png").write_bytes(_png(shapes.images[i]))
    ds = explain_dataset(loaded, tmp_path / "f", "gradient")
    assert ds.names == ["cat/0.png", "cat/2.png", "dog/1.png"] and ds.labels == ["cat", "cat", "dog"]
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        (flat / f"{i}.png").write_bytes(_png(shapes.images[i]))
    (flat / "labels.csv").write_text("file,label\n0.png,star\n2.png,ring\n")
    s = open_images(flat)
    assert s.labels == ["star", None, "ring"]
    (tmp_path / "other.csv").write_text("1.png,cross\n")
    assert open_images(flat, labels=tmp_path / "other.csv").labels[1] == "cross"


def test_stop_keeps_what_is_done(loaded, shapes):
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 8:
            stop.set()

    ds = explain_dataset(loaded, list(shapes.images), "gradient", chunk=8, progress=progress,
                         cancel=stop)
    assert not ds.complete and len(ds) == 8 and ds.maps.shape[0] == 8
    assert seen and seen[-1] <= 24


class CountingEngine(LocalEngine):
    """The real in-process engine, counting the images it is asked to explain."""

    def __init__(self):
        super().__init__()
        self.images = 0

    def explain(self, model, inputs, method, target="predicted", **params):
        self.images += len(inputs)
        return super().explain(model, inputs, method, target, **params)


def test_a_rerun_reuses_cached_maps(loaded, shapes):
    cache: dict = {}
    engine = CountingEngine()
    first = explain_dataset(loaded, list(shapes.images[:10]), "gradient", cache=cache, engine=engine)
    assert engine.images == 10 and len(cache) == 10
    again = explain_dataset(loaded, list(shapes.images[:14]), "gradient", cache=cache, engine=engine)
    assert engine.images == 14  # only the 4 new images were computed
    np.testing.assert_array_equal(again.maps[:10], first.maps)
    other = explain_dataset(loaded, list(shapes.images[:2]), "gradcam", cache=cache, engine=engine)
    assert engine.images == 16 and len(other) == 2  # other settings: computed


def test_deletion_auc_is_a_column_when_asked(loaded, shapes):
    ds = explain_dataset(loaded, list(shapes.images[:4]), "gradcam", deletion=True)
    assert "deletion_auc" in ds.table.columns
    assert ds.table["deletion_auc"].between(0, 1).all()


def test_measures_on_known_maps():
    flat = np.ones((1, 8, 8))
    corner = np.zeros((1, 8, 8))
    corner[0, 0, 0] = 1
    assert measures.gini(flat)[0] == pytest.approx(0)
    assert measures.gini(corner)[0] == pytest.approx(63 / 64)
    assert measures.border_share(flat)[0] == pytest.approx(1 - 36 / 64)
    assert measures.corner_share(flat)[0] == pytest.approx(0.25)
    assert measures.corner_share(corner, "top_left")[0] == 1
    assert measures.top_mass(flat, 0.25)[0] == pytest.approx(0.25)
    assert measures.gini(np.zeros((1, 4, 4)))[0] == 0


def _two_groups(n_a=30, n_b=12, seed=0):
    rng = np.random.default_rng(seed)
    a = np.zeros((n_a, 12, 12))
    a[:, 4:8, 4:8] = 1
    b = np.zeros((n_b, 12, 12))
    b[:, :3, :3] = 1
    noisy = np.concatenate([a, b]) + rng.uniform(0, 0.1, (n_a + n_b, 12, 12))
    return noisy * rng.uniform(0.5, 2, (n_a + n_b, 1, 1))  # strength differs, the place does not


def test_cluster_maps_finds_two_strategies_by_the_eigengap():
    maps = _two_groups()
    c = cluster_maps(maps)
    assert c.n_clusters == 2 and c.labels.shape == (42,)
    assert (c.labels[:30] == 0).all() and (c.labels[30:] == 1).all()  # 0 is the largest
    assert int(np.argmax(c.eigengaps[1:])) + 2 == 2
    np.testing.assert_array_equal(cluster_maps(maps, seed=0).labels, c.labels)


def test_cluster_maps_keeps_one_blob_whole_and_takes_a_given_count():
    blob = np.random.default_rng(1).uniform(size=(60, 8, 8))
    assert cluster_maps(blob).n_clusters == 1
    forced = cluster_maps(_two_groups(), n_clusters=3)
    assert forced.n_clusters == 3 and set(forced.labels.tolist()) == {0, 1, 2}
    with pytest.raises(sc.SaliencyError):
        cluster_maps(blob, n_clusters=100)
    assert cluster_maps(blob[:2]).labels.tolist() == [0, 0]


@pytest.mark.long  # scikit-learn's t-SNE: its import and first run take seconds
def test_embedding_has_two_coordinates_per_map():
    emb = embed_maps(_two_groups())
    assert emb.shape == (42, 2) and np.isfinite(emb).all()
