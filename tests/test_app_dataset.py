"""The Dataset page under AppTest: the bundled shapes-watermark sample explained through the
queue, the strategies with the planted shortcut on top, the gallery's filters, a shared link
that restores (and, from the map cache, recomputes nothing), bad links and hostile uploads."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from support.apptest import count_engine_runs, run_app_page, share_link, shown
from support.browser import REPO_ROOT

from saliency_core.datasets import DatasetError
from workbench.hosting.share import ShareStore
from workbench.jobs import datasets
from workbench.ui import dataset_inputs

PAGE = str(REPO_ROOT / "pages" / "dataset.py")
TIMEOUT = 240


@pytest.fixture
def runs():
    datasets.map_cache.clear()
    calls: list[tuple[str, str]] = []
    with count_engine_runs(lambda model, method: calls.append((model.name, method))):
        yield calls
    datasets.map_cache.clear()


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def cluster_lines(at) -> list[str]:
    return [shown(m.value) for m in at.markdown if m.value.startswith("**Cluster")]


@pytest.mark.long  # 240 images through the page: `make test-dataset`
def test_the_sample_runs_and_the_shortcut_class_comes_first(runs):
    at = run_app_page(PAGE, timeout=TIMEOUT)
    assert any("Press Run to explain the 240 images" in i.value for i in at.info)
    assert not runs  # nothing runs before Run is pressed
    at.button(key="dataset.run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert metrics(at)["Images explained"] == "240"
    assert len(runs) == 8 and {r for r in runs} == {("shapes-cnn-watermark", "gradcam")}  # 8 chunks
    headers = [s.value for s in at.subheader]
    assert headers[0].startswith("square: 30 images")  # the class whose maps sit in a corner
    first = cluster_lines(at)[0]
    assert "looks at the corners or border" in first, cluster_lines(at)[:4]
    link = share_link(at)
    assert "data=sample%3Ashapes-watermark" in link and "run=1" in link
    # The gallery: 24 per page; filtered to wrong answers on the squares.
    at.multiselect(key="dataset.f_true").set_value(["square"]).run()
    at.selectbox(key="dataset.f_outcome").set_value("wrong").run()
    count = next(c.value for c in at.caption if " of 240 images" in c.value)
    assert count.startswith(("1 of", "2 of", "3 of", "4 of")) or int(count.split()[0]) < 30
    assert len(runs) == 8  # filters never run the model


@pytest.mark.long
def test_a_shared_link_restores_the_view_from_the_map_cache(runs):
    query = {"data": "sample:shapes-watermark", "model": "shapes-cnn", "method": "gradient",
             "group": "true", "sort": "corners", "run": "1"}
    at = run_app_page(PAGE, query, TIMEOUT)
    assert metrics(at)["Images explained"] == "240" and runs
    assert at.selectbox(key="dataset.sort").value == "corners"
    # The clean model: no square cluster looks at the corner.
    assert not any("looks at the corners" in line for line in cluster_lines(at)[:4])
    computed = len(runs)
    again = run_app_page(PAGE, query, TIMEOUT)  # another session opening the same link
    assert metrics(again)["Images explained"] == "240"
    assert len(runs) == computed  # every map came from the cache


def test_a_bad_link_falls_back_to_the_sample_and_says_so(runs):
    at = run_app_page(PAGE, {"data": "upload:" + "0" * 64}, TIMEOUT)
    assert any("Showing the shapes sample instead" in w.value for w in at.warning)
    assert any("240 images" in c.value for c in at.caption)


def _zip(entries) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_uploads_are_checked_before_they_are_stored(tmp_path):
    store = ShareStore(tmp_path / "store")
    with pytest.raises(DatasetError, match="zip bomb"):
        dataset_inputs.store_upload([("bomb.zip", _zip([("z.png", b"\0" * (3000 * 2**20 // 1000))]))],
                                    store)
    with pytest.raises(DatasetError, match="None of the uploaded files"):
        dataset_inputs.store_upload([("notes.txt", b"hi"), ("x.png", b"nope")], store)
    assert not list((tmp_path / "store").glob("*")) if (tmp_path / "store").exists() else True
    source = dataset_inputs.store_upload([("a.png", _png()), ("a.png", _png()),
                                          ("labels.csv", b"a.png,cat\n")], store)
    images = dataset_inputs.open_source(source, store)
    assert images.names == ["a (2).png", "a.png"] and images.labels == [None, "cat"]


def test_server_folders_come_from_the_allowlist_only(tmp_path, monkeypatch):
    allowed = tmp_path / "allowed"
    (allowed / "cats").mkdir(parents=True)
    (allowed / "cats" / "1.png").write_bytes(_png())
    monkeypatch.setenv(dataset_inputs.FOLDERS_ENV, str(allowed))
    store = ShareStore(tmp_path / "store")
    assert dataset_inputs.open_source("folder:allowed", store).labels == ["cats"]
    with pytest.raises(DatasetError, match="not on this server's list"):
        dataset_inputs.open_source("folder:etc", store)


def test_stop_keeps_the_images_done_in_the_map_cache():
    """Stop interrupts the page's run; the rerun that follows shows every image whose chunk
    finished, read from the cache without running the model."""
    import threading

    import saliency_core as sc
    from saliency_core.datasets.samples import shapes_watermark

    datasets.map_cache.clear()
    loaded = sc.load_model("shapes-cnn", device="cpu")
    images = shapes_watermark(40).image_set()
    stop = threading.Event()

    def progress(done, _total):
        if done >= 16:
            stop.set()

    partial = sc.explain_dataset(loaded, images, "gradient", chunk=16, progress=progress,
                                 cancel=stop, cache=datasets.map_cache())
    kept = datasets.collected(loaded, images, "gradient", {})
    assert not partial.complete and not kept.complete
    assert len(partial) == len(kept) == 16 and kept.names == images.names[:16]
    np.testing.assert_array_equal(kept.maps, partial.maps)
    datasets.map_cache.clear()
