"""Hostile datasets: zip bombs, paths that leave the archive, links, nested archives, files that
are not images or are damaged, floods of tiny files and duplicate names. Each gets a clear
message (the whole dataset refused, or one entry of ``errors``), nothing crashes, and nothing
is ever written to disk: archives are read in memory, never extracted."""

from __future__ import annotations

import io
import os
import pickle
import stat
import time
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

import saliency_core as sc
from saliency_core.datasets import (
    DatasetError,
    DatasetLimits,
    explain_dataset,
    open_images,
)


def png(value: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def make_zip(entries, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name or ZipInfo, bytes)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we plant
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in entries:
                archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def loaded():
    return sc.load_model("shapes-cnn", device="cpu")


@pytest.fixture
def untouched(tmp_path, monkeypatch):
    """Run in an empty folder and check afterwards that nothing appeared in it or above it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = set(os.listdir(tmp_path))
    yield work
    assert os.listdir(work) == [] and set(os.listdir(tmp_path)) == before


def test_a_zip_bomb_is_refused_before_decompressing(untouched):
    bomb = make_zip([("a.png", png()), ("zeros.png", b"\0" * (40 * 2**20))])
    assert len(bomb) < 200_000  # 40 MB of zeros compress a thousandfold
    with pytest.raises(DatasetError, match="unpacks to 40 MB.*zip bomb"):
        open_images(bomb, limits=DatasetLimits(max_unpacked_mb=32))
    # Under the total cap, the member's own ratio gives it away; the other images still count.
    found = open_images(bomb, limits=DatasetLimits(max_file_mb=64))
    assert found.names == ["a.png"]
    assert "zip bomb" in found.errors[0].message and found.errors[0].file == "zeros.png"


def test_paths_that_leave_the_archive_are_listed_and_never_written(untouched, loaded):
    data = make_zip([("../evil.png", png()), ("/etc/abs.png", png()), ("a/../../up.png", png()),
                     ("C:\\windows\\win.png", png()), ("ok/good.png", png())])
    ds = explain_dataset(loaded, data, "gradient")
    assert ds.names == ["ok/good.png"] and ds.labels == ["ok"]
    problems = {e.file: e.message for e in ds.errors}
    assert set(problems) == {"../evil.png", "/etc/abs.png", "a/../../up.png", "C:\\windows\\win.png"}
    assert all("absolute" in m or "leaves" in m for m in problems.values())
    assert not (untouched.parent / "evil.png").exists()


def test_symlinks_in_a_zip_are_not_followed(untouched):
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    found = open_images(make_zip([(link, b"/etc/passwd"), ("real.png", png())]))
    assert found.names == ["real.png"]
    assert found.errors[0].file == "link.png" and "link" in found.errors[0].message


def test_symlinks_in_a_folder_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png())
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.png").write_bytes(png())
    (root / "cat" / "to_secret.png").symlink_to(outside / "secret.png")
    (root / "dog").symlink_to(outside, target_is_directory=True)
    found = open_images(root)
    assert found.names == ["cat/a.png"]
    assert {e.file for e in found.errors} == {"cat/to_secret.png", "dog"}


def test_nested_archives_non_images_and_damaged_images_are_listed(untouched, loaded):
    inner = make_zip([("x.png", png())])
    pickled = pickle.dumps({"not": "executed"})
    data = make_zip([("inner.zip", inner), ("model.pkl", pickled), ("notes.txt", b"hi"),
                     ("cut.png", png()[:90]), ("exe.png", b"MZ" + b"\0" * 100),
                     ("good.png", png(10)), ("also/good.jpg", _jpeg())])
    ds = explain_dataset(loaded, data, "gradcam")
    assert ds.names == ["also/good.jpg", "good.png"]
    problems = {e.file: e.message for e in ds.errors}
    assert "archives inside archives" in problems["inner.zip"]
    assert "Not an image file (.pkl)" in problems["model.pkl"]
    assert "Not an image file (.txt)" in problems["notes.txt"]
    assert "damaged" in problems["cut.png"]
    assert "not an image" in problems["exe.png"]


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def test_a_flood_of_tiny_files_is_refused_from_the_listing(untouched):
    started = time.perf_counter()
    flood = make_zip([(f"f{i}.png", b"") for i in range(100_000)], zipfile.ZIP_STORED)
    built = time.perf_counter()
    with pytest.raises(DatasetError, match="more than 20,000 files.*SALIENCY_DATASET_MAX_FILES"):
        open_images(flood)
    assert time.perf_counter() - built < 2 * (built - started) + 5  # no decoding, just the list


def test_a_folder_over_the_file_cap_is_refused(tmp_path):
    for i in range(30):
        (tmp_path / f"{i}.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="more than 20 files"):
        open_images(tmp_path, limits=DatasetLimits(max_files=20))


def test_duplicate_names_in_a_zip_keep_the_first(untouched, loaded):
    data = make_zip([("a.png", png(0)), ("a.png", png(255)), ("b.png", png(128))])
    ds = explain_dataset(loaded, data, "gradient")
    assert ds.names == ["a.png", "b.png"]
    assert [e.file for e in ds.errors] == ["a.png"] and "same name" in ds.errors[0].message
    first = explain_dataset(loaded, [np.zeros((64, 64, 3), np.uint8)], "gradient")
    np.testing.assert_allclose(ds.maps[0], first.maps[0], rtol=1e-5)


def test_duplicate_names_among_uploaded_files_are_both_kept():
    found = open_images([("cat.png", png(1)), ("cat.png", png(2)), ("dir/cat.png", png(3))])
    assert found.names == ["cat.png", "cat (2).png", "cat (3).png"]


def test_files_over_the_size_cap_and_archives_over_the_dataset_cap(untouched):
    noisy = np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)
    big = io.BytesIO()
    Image.fromarray(noisy).save(big, format="PNG")
    found = open_images(make_zip([("big.png", big.getvalue()), ("s.png", png())]),
                        limits=DatasetLimits(max_file_mb=1))
    assert found.names == ["s.png"] and "images up to 1 MB" in found.errors[0].message
    with pytest.raises(DatasetError, match="at most 1 MB"):
        open_images(make_zip([("big.png", big.getvalue())], zipfile.ZIP_STORED),
                    limits=DatasetLimits(max_archive_mb=1))


def test_not_a_zip_and_an_empty_archive_say_so():
    with pytest.raises(DatasetError, match="not a zip archive"):
        open_images(b"PK\x03\x04 but not really a zip")
    with pytest.raises(DatasetError, match="holds no images"):
        open_images(make_zip([]))


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SALIENCY_DATASET_MAX_FILES", "7")
    monkeypatch.setenv("SALIENCY_DATASET_MAX_MB", "300")
    limits = DatasetLimits.from_env()
    assert (limits.max_files, limits.max_archive_mb) == (7, 300)
    with pytest.raises(DatasetError, match="more than 7 files"):
        open_images(make_zip([(f"{i}.png", png()) for i in range(8)]))
    monkeypatch.setenv("SALIENCY_DATASET_MAX_FILES", "many")
    with pytest.raises(DatasetError, match="not a whole number"):
        DatasetLimits.from_env()
