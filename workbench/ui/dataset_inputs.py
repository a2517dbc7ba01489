"""Where the Dataset page's images come from, each named by a short source string a share link
can carry: ``sample:shapes-watermark``, ``sample:photos``, ``upload:<sha256>`` (a zip kept in
the share store under its content hash, like single uploads; several uploaded files are packed
into one zip first) or ``folder:<name>`` (a server folder on the administrator's allowlist,
``SALIENCY_DATASET_FOLDERS``).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from saliency_core.datasets import DatasetError, DatasetLimits, ImageSet, open_images
from saliency_core.datasets.samples import SHAPES_WATERMARK, shapes_watermark
from saliency_core.datasets.sources import DatasetItem
from saliency_core.errors import SaliencyError
from workbench.hosting.share import ShareStore, is_digest
from workbench.hosting.uploads import weights_limit_mb
from workbench.ui.inputs import PHOTOS, _photo

FOLDERS_ENV = "SALIENCY_DATASET_FOLDERS"
SAMPLES = {
    SHAPES_WATERMARK: "Shapes with a watermark planted on half of the squares",
    "photos": "The photo samples",
}
DEFAULT_SOURCE = f"sample:{SHAPES_WATERMARK}"
UPLOAD_TYPES = ["zip", "png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "csv"]


def folder_allowlist() -> dict[str, Path]:
    """The server folders users may explain, by their names (SALIENCY_DATASET_FOLDERS,
    comma-separated paths; none by default)."""
    found: dict[str, Path] = {}
    for raw in os.environ.get(FOLDERS_ENV, "").split(","):
        if raw.strip():
            path = Path(raw.strip()).expanduser()
            name = path.name or str(path)
            while name in found:
                name += "+"
            found[name] = path
    return found


def upload_limit_mb() -> int:
    """Datasets' own upload limit (SALIENCY_DATASET_MAX_MB, 200), never above the server's cap."""
    return min(DatasetLimits.from_env().max_archive_mb, weights_limit_mb())


def source_label(source: str) -> str:
    kind, _, name = source.partition(":")
    if kind == "sample":
        return SAMPLES.get(name, name)
    if kind == "upload":
        return f"Uploaded dataset {name[:10]}"
    if kind == "folder":
        return f"Server folder {name}"
    return source


def _photos() -> ImageSet:
    items = [DatasetItem(f"{name}.png", None, (lambda n=name: _photo(n))) for name in PHOTOS]
    return ImageSet(items, [], "photos")


@st.cache_resource(show_spinner=False, max_entries=2)
def _shapes_sample():
    return shapes_watermark()


@st.cache_resource(show_spinner=False, max_entries=4)
def _zip_set(digest: str, data: bytes) -> ImageSet:
    return open_images(data)


def open_source(source: str, store: ShareStore) -> ImageSet:
    """The images a source names; SaliencyError (DatasetError, ShareLinkError) when it cannot."""
    kind, _, name = source.partition(":")
    if kind == "sample" and name == SHAPES_WATERMARK:
        return _shapes_sample().image_set()
    if kind == "sample" and name == "photos":
        return _photos()
    if kind == "upload" and is_digest(name):
        return _zip_set(name, store.get(name))
    if kind == "folder":
        folders = folder_allowlist()
        if name not in folders:
            raise DatasetError(f"The server folder {name!r} is not on this server's list "
                               f"({FOLDERS_ENV}).")
        return open_images(folders[name])
    raise DatasetError(f"The dataset {source!r} is not understood (expected sample:..., "
                       "upload:... or folder:...).")


def watermarked_names(source: str) -> set[str]:
    """The stamped images of the shapes sample (for the gallery's caption); empty otherwise."""
    if source != DEFAULT_SOURCE:
        return set()
    sample = _shapes_sample()
    return {n for n, w in zip(sample.names, sample.watermarked, strict=True) if w}


def pack(files: list[tuple[str, bytes]]) -> bytes:
    """One uploaded zip as it is; several files (images and perhaps labels.csv) as one zip, so
    the dataset has one content hash for its link."""
    if len(files) == 1 and files[0][0].lower().endswith(".zip"):
        return files[0][1]
    buffer = io.BytesIO()
    taken: set[str] = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files:
            base = Path(name.replace("\\", "/")).name or "file"
            stem, suffix = os.path.splitext(base)
            unique, n = base, 2
            while unique in taken:
                unique, n = f"{stem} ({n}){suffix}", n + 1
            taken.add(unique)
            archive.writestr(unique, data)
    return buffer.getvalue()


def store_upload(files: list[tuple[str, bytes]], store: ShareStore) -> str:
    """Check the uploaded files as a dataset, keep them, and return their source string."""
    total = sum(len(d) for _n, d in files)
    limit = upload_limit_mb()
    if total > limit * 2**20:
        raise DatasetError(f"The upload is {total / 2**20:.1f} MB; datasets up to {limit} MB are "
                           "accepted (SALIENCY_DATASET_MAX_MB).")
    if any(n.lower().endswith(".zip") for n, _ in files) and len(files) > 1:
        raise DatasetError("Upload one zip, or several images (and a labels.csv), not both.")
    data = pack(files)
    found = open_images(data)  # refused here, before anything is stored
    problems = [f"{e.file}: {e.message}" for e in found.errors]
    for i in range(len(found)):
        try:
            found.image(i)
            break  # one readable image is enough: the others are listed when explained
        except SaliencyError as exc:
            problems.append(f"{found.names[i]}: {exc}")
    else:
        raise DatasetError("None of the uploaded files is an image we can read: "
                           + "; ".join(problems[:3]))
    return f"upload:{store.put(data)}"


def try_open(source: str, store: ShareStore) -> tuple[ImageSet | None, str | None]:
    try:
        return open_source(source, store), None
    except SaliencyError as exc:
        return None, str(exc)


def thumbnail_png_bytes(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def pixels_of(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture.convert("RGB"))
