"""The planted shortcut is found with no configuration: on the bundled shapes-watermark sample
(the corner stamp on half of the squares only), spectral relevance analysis of the squares'
Grad-CAM maps (the Image page's default method) from ``shapes-cnn-watermark`` has, among its
two largest clusters, one that is mostly stamped images and whose average map lights up the
stamp's corner; ``shapes-cnn``, which never saw a stamp, has no cluster looking there."""

from __future__ import annotations

import numpy as np
import pytest

import saliency_core as sc
from saliency_core.datasets.measures import corner_share
from saliency_core.datasets.samples import WATERMARKED_CLASS, shapes_watermark
from saliency_core.evaluation import cluster_maps

# A flat map puts 1/16 of its mass in the top-left quarter-by-quarter square.
CORNER_LIT = 0.25
CORNER_DARK = 0.15


@pytest.fixture(scope="module")
def sample():
    return shapes_watermark()


def clusters_of_the_stamped_class(model_name, sample):
    loaded = sc.load_model(model_name, device="cpu")
    ds = sc.explain_dataset(loaded, sample.image_set(), "gradcam")
    assert ds.complete and not ds.errors and len(ds) == len(sample.names)
    chosen = np.array(ds.labels) == WATERMARKED_CLASS
    clusters = cluster_maps(ds.maps[chosen])
    stamped = sample.watermarked[chosen]
    found = []
    for k in range(clusters.n_clusters):
        members = clusters.labels == k
        average = ds.maps[chosen][members].mean(0)[None]
        found.append({"size": int(members.sum()), "purity": float(stamped[members].mean()),
                      "corner": float(corner_share(average, "top_left")[0])})
    return found


def test_the_sample_stamps_half_of_one_class_only(sample):
    labels = np.array(sample.labels)
    assert set(labels[sample.watermarked]) == {WATERMARKED_CLASS}
    assert sample.watermarked[labels == WATERMARKED_CLASS].mean() == pytest.approx(0.5, abs=0.04)


@pytest.mark.slow
def test_the_watermark_model_has_a_stamp_cluster_and_the_clean_model_none(sample):
    with_shortcut = clusters_of_the_stamped_class("shapes-cnn-watermark", sample)
    print("shapes-cnn-watermark clusters of the squares:", with_shortcut)
    top = sorted(with_shortcut, key=lambda c: -c["size"])[:2]
    hits = [c for c in top if c["purity"] >= 0.8 and c["corner"] >= CORNER_LIT]
    assert hits, with_shortcut
    clean = clusters_of_the_stamped_class("shapes-cnn", sample)
    print("shapes-cnn clusters of the squares:", clean)
    assert all(c["corner"] < CORNER_DARK for c in clean), clean
