"""The app's support pieces on their own: share store, link codec, result cache, display maths,
exports."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest

from saliency_core.methods.specs import Param
from workbench.hosting.share import ShareLinkError, ShareStore, digest_of, share_dir
from workbench.jobs.results import ImageResult, ResultCache, result_key
from workbench.ui import display, export
from workbench.ui.urlstate import UrlReader, encode

# ---- share store ------------------------------------------------------------------------------

def test_share_store_round_trip_by_content_hash(tmp_path):
    store = ShareStore(tmp_path)
    digest = store.put(b"picture bytes")
    assert digest == digest_of(b"picture bytes") and len(digest) == 64
    assert store.get(digest) == b"picture bytes"
    assert store.put(b"picture bytes") == digest  # idempotent
    assert len(list(tmp_path.glob("*.bin"))) == 1


@pytest.mark.parametrize("bad", ["", "abc", "../../etc/passwd", "G" * 64, "0" * 63])
def test_share_store_refuses_malformed_references(tmp_path, bad):
    with pytest.raises(ShareLinkError, match="malformed"):
        ShareStore(tmp_path).get(bad)


def test_share_store_unknown_and_damaged_entries(tmp_path):
    store = ShareStore(tmp_path)
    with pytest.raises(ShareLinkError, match="does not have"):
        store.get("a" * 64)
    digest = store.put(b"original")
    (tmp_path / f"{digest}.bin").write_bytes(b"tampered")
    with pytest.raises(ShareLinkError, match="damaged"):
        store.get(digest)


def test_share_store_stays_under_its_size_bound_dropping_oldest(tmp_path):
    store = ShareStore(tmp_path, limit_bytes=250)
    first = store.put(b"a" * 100)
    old = time.time() - 100
    os.utime(tmp_path / f"{first}.bin", (old, old))
    second = store.put(b"b" * 100)
    third = store.put(b"c" * 100)  # 300 bytes > 250: the oldest goes
    assert not (tmp_path / f"{first}.bin").exists()
    assert store.get(second) and store.get(third)


def test_share_dir_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "links"))
    assert share_dir() == tmp_path / "links"
    monkeypatch.delenv("SALIENCY_SHARE_DIR")
    assert share_dir().name == "share_store"


# ---- link codec -------------------------------------------------------------------------------

def test_url_reader_takes_good_values_and_reports_bad_ones():
    r = UrlReader({"m": "b", "n": "7", "f": "0.25", "flag": "yes", "bad_n": "x", "far": "99",
                   "pick": "zzz", "t": "hello", "list": ["1", "2"]})
    assert r.choice("m", ["a", "b"], "a") == "b"
    assert r.number("n", 1, 0, 10, integer=True) == 7
    assert r.number("f", 0.5, 0.0, 1.0) == 0.25
    assert r.flag("flag", False) is True
    assert r.text("t", "") == "hello"
    assert r.number("list", 0, integer=True) == 2  # a repeated key: the last value
    assert r.problems == []
    assert r.number("bad_n", 3, integer=True) == 3
    assert r.number("far", 5, 0, 10) == 5
    assert r.choice("pick", ["a", "b"], "a") == "a"
    assert r.number("missing", 4) == 4
    assert len(r.problems) == 3
    assert "bad_n='x'" in r.problems[0] and "far='99'" in r.problems[1]


def test_url_reader_rejects_nan_and_non_integral_numbers():
    r = UrlReader({"a": "nan", "b": "2.5", "c": "inf"})
    assert r.number("a", 1.0) == 1.0
    assert r.number("b", 1, integer=True) == 1
    assert r.number("c", 1.0) == 1.0
    assert len(r.problems) == 3


def test_url_reader_spec_params_follow_the_spec():
    steps = Param("steps", "int", 50, "", min=2, max=1024)
    baseline = Param("baseline", "choice", "black", "", choices=("black", "blur"),
                     text_choices=("pad", "mask"))
    layer = Param("layer", "layer", None, "")
    r = UrlReader({"steps": "1", "baseline": "pad", "layer": "layer9", "ok": "16"})
    assert r.spec_param("steps", steps, "image") == 50  # below the minimum
    assert r.spec_param("ok", steps, "image") == 16
    assert r.spec_param("baseline", baseline, "image") == "black"
    assert r.spec_param("baseline", baseline, "text") == "pad"
    assert r.spec_param("layer", layer, "image", layers=["layer4"]) is None
    assert r.spec_param("layer", layer, "image", layers=["layer9"]) == "layer9"
    assert len(r.problems) == 3


def test_encode_writes_plain_strings():
    assert encode({"a": True, "b": 0.5, "c": None, "d": 3, "e": "x"}) == {
        "a": "true", "b": "0.5", "d": "3", "e": "x"}


# ---- result cache -----------------------------------------------------------------------------

def _result(n: int) -> ImageResult:
    return ImageResult(np.zeros(n, np.float32), np.zeros(2, np.float32), 0, 0, {})


def test_result_cache_is_bounded_and_least_recently_used():
    one = _result(1000).nbytes
    cache = ResultCache(max_bytes=int(one * 2.5))
    cache.put("a", _result(1000))
    cache.put("b", _result(1000))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", _result(1000))
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.size_bytes <= cache.max_bytes
    cache.put("huge", _result(10_000))  # larger than the whole budget: not kept
    assert "huge" not in cache and len(cache) == 2


def test_result_keys_ignore_parameter_order():
    assert result_key("m", {"a": 1, "b": 2}) == result_key("m", {"b": 2, "a": 1})
    assert result_key("m", {"a": 1}) != result_key("m", {"a": 2})


# ---- display ----------------------------------------------------------------------------------

def test_render_map_shared_scale_and_signed_view():
    attribution = np.zeros((3, 4, 4))
    attribution[0, 0, 0] = 2.0
    attribution[1, 1, 1] = -1.0
    image = np.zeros((4, 4, 3), np.uint8)
    options = display.DisplayOptions("inferno", 0.5, 100.0, "absolute", "max_abs")
    own = display.render_map(attribution, image, options)
    assert own.scaled.max() == 1.0 and own.clip_value == 2.0
    shared = display.render_map(attribution, image, options, scale=4.0)
    assert shared.scaled.max() == 0.5
    signed = display.render_map(attribution, image,
                                display.DisplayOptions("RdBu_r", 0.5, 100.0, "signed", "max_abs"))
    assert signed.signed and signed.scaled[1, 1] == -0.5 and signed.scaled[0, 0] == 1.0


def test_completeness_reading_grades_the_gap():
    good = {"sum_attribution": [2.0], "f_x": [3.0], "f_baseline": [1.0]}
    assert display.completeness_reading(good)[0] == "success"
    close = {"sum_attribution": [2.06], "f_x": [3.0], "f_baseline": [1.0]}
    assert display.completeness_reading(close)[0] == "info"
    poor = {"sum_attribution": [1.0], "f_x": [3.0], "f_baseline": [1.0]}
    severity, sentence = display.completeness_reading(poor)
    assert severity == "warning" and "steps" in sentence and "50.0%" in sentence
    flat = {"sum_attribution": [0.0], "f_x": [1.0], "f_baseline": [1.0]}
    assert "another baseline" in display.completeness_reading(flat)[1]
    assert display.completeness_reading({"passes": 1}) is None


def test_top_predictions_are_sorted_and_labelled():
    rows = display.top_predictions(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"], k=2)
    assert [(r["class"], r["index"]) for r in rows] == [("b", 1), ("c", 2)]


def test_enlarge_keeps_small_images_crisp():
    tiny = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    big = display.enlarge(tiny, 8)
    assert big.shape == (8, 8, 3) and (big[:4, :4] == tiny[0, 0]).all()
    photo = np.zeros((500, 400, 3), np.uint8)
    assert display.enlarge(photo, 320) is photo


# ---- exports ----------------------------------------------------------------------------------

def test_exports_are_valid_files():
    data = export.npz_bytes(attribution=np.ones((3, 2, 2)), target=4)
    loaded = np.load(io.BytesIO(data))
    assert loaded["attribution"].shape == (3, 2, 2) and int(loaded["target"]) == 4
    record = json.loads(export.json_record(params={"sigma": 0.1}, values=np.array([1.5]),
                                           bad=float("inf"), when=np.float32(2.0)))
    assert record["params"] == {"sigma": 0.1} and record["values"] == [1.5]
    assert record["bad"] is None and record["when"] == 2.0 and record["record_version"] == 1
    assert export.file_stem("shapes-cnn", "integrated_gradients", "upload:ab/cd") == \
        "shapes-cnn_integrated_gradients_upload-ab-cd"
