"""Many images from one place: a folder, a zip archive, files or pictures in memory, each with
its name, its true label when one is known, and a way to read it again later.

Everything here treats its input as hostile. A zip is never extracted: members are listed from
its central directory, checked (name, type, size, compression ratio) before a byte is
decompressed, and read into memory one at a time when they are explained, so nothing is ever
written to disk and a name like ``../../etc/passwd`` is only a name. Links are never followed,
archives inside archives are not opened, and every file that cannot be used becomes one entry
of ``errors`` instead of an exception: one bad file never stops a dataset.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from saliency_core.datasets.limits import DatasetError, DatasetLimits
from saliency_core.errors import SaliencyError
from saliency_core.io.images import load_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
LABELS_FILE = "labels.csv"
LABELS_MAX_BYTES = 2 * 2**20
# Files every desktop adds to folders and archives; skipped without a word.
_NOISE = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")


@dataclass(frozen=True)
class FileError:
    """One file of a dataset that was not explained, and why (a message for the user)."""

    file: str
    message: str


@dataclass
class DatasetItem:
    """One image of a dataset: its unique name, its true label (None when unknown) and how to
    read it (the file's bytes, or a picture already in memory)."""

    name: str
    label: str | None
    read: Callable[[], Any] = field(repr=False)


@dataclass
class ImageSet:
    """The images of a dataset, in a stable order, and the files that were left out.

    Example:
        >>> from PIL import Image
        >>> images = open_images([Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8))])
        >>> len(images), images.image(1).size
        (2, (8, 8))
    """

    items: list[DatasetItem]
    errors: list[FileError] = field(default_factory=list)
    description: str = "images"

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.items]

    @property
    def labels(self) -> list[str | None]:
        return [item.label for item in self.items]

    def image(self, i: int) -> Image.Image:
        """Image ``i`` as 8-bit RGB; ImageReadError (a SaliencyError) when it cannot be read."""
        return as_picture(self.items[i].read())


def as_picture(value: Any) -> Image.Image:
    """Bytes of an image file, a PIL image or an array [H, W, 3] / [H, W] -> RGB PIL image."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        image, _notices = load_image(bytes(value))
        return image
    if isinstance(value, Image.Image):
        return value.convert("RGB") if value.mode != "RGB" else value
    if isinstance(value, np.ndarray):
        a = value
        if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
            a = np.moveaxis(a, 0, -1)  # [C, H, W] -> [H, W, C]
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
            raise SaliencyError(f"an image array must be [H, W, 3] or [H, W]; got shape {value.shape}")
        if a.dtype != np.uint8:
            f = np.nan_to_num(a.astype(np.float64))
            if f.min() >= 0 and f.max() <= 1:
                f = f * 255
            a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(a)).convert("RGB")
    raise SaliencyError(f"cannot read an image from {type(value).__name__}")


def open_images(images: Any, labels: Any = None, limits: DatasetLimits | None = None) -> ImageSet:
    """Many images from any of the forms ``explain_dataset`` takes.

    Args:
        images: An ``ImageSet``; a folder (labels from its sub-folder names, or from a
            ``labels.csv`` inside it); a zip archive (a path or its bytes; the same labels);
            or a sequence of PIL images, arrays [H, W, 3], image file paths or
            ``(name, bytes)`` pairs.
        labels: The true labels: one per image, a mapping from file name to label, or a path
            to a CSV of ``file,label`` rows. None: from the folders or ``labels.csv``.
        limits: File count and size caps (default: ``DatasetLimits.from_env()``).

    Returns:
        An ``ImageSet``; files that cannot be used are listed in its ``errors``.

    Raises:
        DatasetError: The whole dataset is refused (too many files, too large, not a zip,
            an empty folder).

    Example:
        >>> import numpy as np
        >>> s = open_images([np.zeros((8, 8, 3), np.uint8)], labels=["black"])
        >>> s.names, s.labels
        (['image_0'], ['black'])
    """
    limits = limits or DatasetLimits.from_env()
    if isinstance(images, ImageSet):
        found = images
    elif isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_dir():
            found = open_folder(path, limits)
        elif path.is_file() and path.suffix.lower() == ".zip":
            if path.stat().st_size > limits.max_archive_bytes:
                raise _too_large(path.stat().st_size, limits)
            found = open_zip(path.read_bytes(), limits, description=path.name)
        elif path.is_file():
            found = open_files([path], limits)
        else:
            raise DatasetError(f"no such folder or file: {path}")
    elif isinstance(images, (bytes, bytearray, memoryview)):
        found = open_zip(bytes(images), limits)
    elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        found = open_files(images, limits)
    elif isinstance(images, np.ndarray) and images.ndim == 4:
        found = open_files(list(images), limits)
    else:
        raise DatasetError(
            f"cannot read a dataset from {type(images).__name__}: give a folder, a zip, or a list "
            "of images, arrays or file paths"
        )
    if labels is not None:
        _apply_labels(found, labels)
    return found


def _too_large(size: int, limits: DatasetLimits) -> DatasetError:
    return DatasetError(f"The dataset is {size / 2**20:.1f} MB; at most {limits.max_archive_mb} MB "
                        "is accepted (SALIENCY_DATASET_MAX_MB).")


def _too_many(limits: DatasetLimits) -> DatasetError:
    return DatasetError(f"The dataset holds more than {limits.max_files:,} files; at most "
                        f"{limits.max_files:,} are read (SALIENCY_DATASET_MAX_FILES). Split it.")


def _unique(name: str, taken: set[str]) -> str:
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{stem} ({n}){suffix}", n + 1
    taken.add(candidate)
    return candidate


def open_files(values: Iterable[Any], limits: DatasetLimits) -> ImageSet:
    """A sequence of pictures, arrays, paths or (name, bytes) pairs; a name given twice is
    kept twice, the second as ``name (2).png``."""
    items: list[DatasetItem] = []
    errors: list[FileError] = []
    taken: set[str] = set()
    total = 0
    for i, value in enumerate(values):
        if i >= limits.max_files:
            raise _too_many(limits)
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            name, data = value
            name = _unique(PurePosixPath(name.replace("\\", "/")).name or f"image_{i}", taken)
            if isinstance(data, (bytes, bytearray)):
                total += len(data)
                if total > limits.max_archive_bytes:
                    raise _too_large(total, limits)
                if len(data) > limits.max_file_bytes:
                    errors.append(FileError(name, _file_too_large(len(data), limits)))
                    continue
                if _is_archive(name):
                    errors.append(FileError(name, "An archive among the images: upload it on its own."))
                    continue
            items.append(DatasetItem(name, None, _constant(data)))
        elif isinstance(value, (str, os.PathLike)):
            path = Path(value)
            name = _unique(path.name, taken)
            items.append(DatasetItem(name, None, _file_reader(path, limits)))
        else:
            items.append(DatasetItem(_unique(f"image_{i}", taken), None, _constant(value)))
    return ImageSet(items, errors, f"{len(items)} images")


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _file_too_large(size: int, limits: DatasetLimits) -> str:
    return (f"The file is {size / 2**20:.1f} MB; images up to {limits.max_file_mb} MB are read "
            "(SALIENCY_DATASET_MAX_FILE_MB).")


def _file_reader(path: Path, limits: DatasetLimits) -> Callable[[], bytes]:
    def read() -> bytes:
        # O_NOFOLLOW: a file swapped for a link after it was listed is still not followed.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise SaliencyError(f"cannot open the file ({exc.strerror or exc})") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read(limits.max_file_bytes + 1)
        if len(data) > limits.max_file_bytes:
            raise SaliencyError(_file_too_large(len(data), limits))
        return data

    return read


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_noise(name: str) -> bool:
    base = PurePosixPath(name).name
    return name.startswith("__MACOSX/") or base in _NOISE or base.startswith("._")


def _kind_problem(name: str) -> str | None:
    """Why a file is not taken as an image by its name, or None."""
    if _is_archive(name):
        return "An archive inside the dataset; archives inside archives are not opened."
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return (f"Not an image file ({suffix or 'no extension'}); images are "
                f"{', '.join(IMAGE_SUFFIXES)}.")
    return None


def _label_of(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    return parts[0] if len(parts) > 1 else None


def open_folder(root: Path, limits: DatasetLimits) -> ImageSet:
    """The images under ``root`` (its sub-folders too); sub-folder names are the labels.
    Links are listed as errors and never followed."""
    root = Path(root)
    items: list[DatasetItem] = []
    errors: list[FileError] = []
    seen = 0
    total = 0
    labels_csv: Path | None = None
    pending = [(root, PurePosixPath())]
    while pending:
        folder, rel = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            errors.append(FileError(str(rel) or ".", f"cannot list the folder ({exc.strerror or exc})"))
            continue
        subfolders = []
        for entry in entries:
            seen += 1
            if seen > limits.max_files:
                raise _too_many(limits)
            name = str(rel / entry.name)
            if _is_noise(name) or entry.name.startswith("."):
                continue
            if entry.is_symlink():
                errors.append(FileError(name, "A symbolic link; links are not followed."))
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.append((Path(entry.path), rel / entry.name))
                continue
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                errors.append(FileError(name, "Not a regular file."))
                continue
            if name == LABELS_FILE:
                labels_csv = Path(entry.path)
                continue
            problem = _kind_problem(name)
            if problem is None and info.st_size > limits.max_file_bytes:
                problem = _file_too_large(info.st_size, limits)
            if problem:
                errors.append(FileError(name, problem))
                continue
            total += info.st_size
            if total > limits.max_unpacked_bytes:
                raise DatasetError(f"The images together are over {limits.max_unpacked_mb} MB "
                                   "(SALIENCY_DATASET_MAX_UNPACKED_MB).")
            items.append(DatasetItem(name, _label_of(name), _file_reader(Path(entry.path), limits)))
        pending.extend(reversed(subfolders))
    items.sort(key=lambda item: item.name)
    found = ImageSet(items, errors, root.name or str(root))
    if labels_csv is not None:
        _apply_labels(found, _file_reader(labels_csv, limits)())
    if not items and not errors:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {root}")
    return found


def _unsafe_name(name: str) -> str | None:
    """Why a member name could escape a folder it were extracted to, or None."""
    if "\x00" in name:
        return "The name holds a NUL character."
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "An absolute path inside the archive; it is not read."
    if ".." in PurePosixPath(posix).parts:
        return "A path that leaves the archive's folder ('..'); it is not read."
    return None


def open_zip(data: bytes, limits: DatasetLimits, description: str = "archive") -> ImageSet:
    """The images of a zip archive, listed from its central directory and read on demand."""
    if len(data) > limits.max_archive_bytes:
        raise _too_large(len(data), limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"This file is not a zip archive we can read ({exc}).") from None
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise _too_many(limits)
    declared = sum(max(0, i.file_size) for i in infos)
    if declared > limits.max_unpacked_bytes:
        raise DatasetError(f"The archive unpacks to {declared / 2**20:,.0f} MB; at most "
                           f"{limits.max_unpacked_mb} MB is accepted "
                           "(SALIENCY_DATASET_MAX_UNPACKED_MB). Is it a zip bomb?")
    items: list[DatasetItem] = []
    errors: list[FileError] = []
    taken: set[str] = set()
    labels_data: bytes | None = None
    for info in infos:
        name = info.filename
        if info.is_dir() or _is_noise(name):
            continue
        shown = name.replace("\x00", "?")
        problem = _unsafe_name(name)
        mode = info.external_attr >> 16
        if problem is None and stat.S_ISLNK(mode):
            problem = "A symbolic link; links are not followed."
        if problem is None and info.flag_bits & 0x1:
            problem = "The file is encrypted."
        if problem is None and name in taken:
            problem = "A second file with the same name in the archive; the first one is used."
        if problem is None and name == LABELS_FILE:
            if info.file_size > LABELS_MAX_BYTES:
                problem = "labels.csv is over 2 MB."
            else:
                labels_data = _read_member(archive, info, LABELS_MAX_BYTES)
                continue
        if problem is None:
            problem = _kind_problem(name)
        if problem is None and info.file_size > limits.max_file_bytes:
            problem = _file_too_large(info.file_size, limits)
        if problem is None and info.file_size > max(1, info.compress_size) * limits.max_ratio:
            problem = (f"Compressed {info.file_size / max(1, info.compress_size):,.0f} times "
                       f"(at most {limits.max_ratio}, SALIENCY_DATASET_MAX_RATIO): a zip bomb?")
        if problem:
            errors.append(FileError(shown, problem))
            continue
        taken.add(name)
        items.append(DatasetItem(name, _label_of(name), _member_reader(archive, info, limits)))
    items.sort(key=lambda item: item.name)
    found = ImageSet(items, errors, description)
    if labels_data is not None:
        _apply_labels(found, labels_data)
    if not items and not errors:
        raise DatasetError("The archive holds no images.")
    return found


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    try:
        with archive.open(info) as f:
            data = f.read(cap + 1)  # the declared size may lie: never read past the cap
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise SaliencyError(f"The archive member is damaged ({exc}).") from None
    if len(data) > cap:
        raise SaliencyError("The file is larger than the archive says.")
    return data


def _member_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                   limits: DatasetLimits) -> Callable[[], bytes]:
    return lambda: _read_member(archive, info, limits.max_file_bytes)


def read_labels_csv(data: bytes | str) -> dict[str, str]:
    """``file,label`` rows (a header row is skipped) -> {file: label}.

    Example:
        >>> read_labels_csv(b"file,label\\ncat1.png,cat\\ndog.png,dog\\n")
        {'cat1.png': 'cat', 'dog.png': 'dog'}
    """
    if isinstance(data, bytes):
        if len(data) > LABELS_MAX_BYTES:
            raise DatasetError("The labels file is over 2 MB.")
        text = data.decode("utf-8-sig", errors="replace")
    else:
        text = data
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows and rows[0][0].strip().lower() in ("file", "filename", "path", "image", "name"):
        rows = rows[1:]
    out: dict[str, str] = {}
    for row in rows:
        if len(row) < 2:
            raise DatasetError(f"The labels file needs two columns, file and label; got {row!r}.")
        out[row[0].strip().replace("\\", "/")] = row[1].strip()
    return out


def _apply_labels(found: ImageSet, labels: Any) -> None:
    if isinstance(labels, (str, os.PathLike)) and Path(labels).is_file():
        labels = Path(labels).read_bytes()
    if isinstance(labels, (bytes, str)):
        labels = read_labels_csv(labels)
    if isinstance(labels, Mapping):
        by_base: dict[str, list[str]] = {}
        for key in labels:
            by_base.setdefault(PurePosixPath(key).name, []).append(key)
        for item in found.items:
            key = item.name if item.name in labels else None
            if key is None:
                keys = by_base.get(PurePosixPath(item.name).name, [])
                key = keys[0] if len(keys) == 1 else None
            if key is not None:
                item.label = str(labels[key])
        return
    values = list(labels)
    if len(values) != len(found.items):
        raise DatasetError(f"{len(values)} labels for {len(found.items)} images")
    for item, value in zip(found.items, values, strict=True):
        item.label = None if value is None else str(value)
