"""``explain_dataset``: one method over many images, kept compact.

The images go through the library's own batched ``explain`` a chunk at a time (the engine's
stream sizes the model passes inside a chunk, retries smaller after an out-of-memory error and
honours Stop), and of each attribution only a downsampled, non-negative map [s, s] and the
prediction stay: 32 x 32 float32 is 4 KB an image, so 10,000 images fit in tens of megabytes.
The full map of any one image is recomputed on demand (``full_map``). Stop (``cancel``) keeps
every chunk already done; a ``cache`` mapping lets a rerun skip the images it has seen.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
import torch
import torch.nn.functional as F

from saliency_core.datasets import measures
from saliency_core.datasets.limits import DatasetLimits
from saliency_core.datasets.sources import FileError, ImageSet, as_picture, open_images
from saliency_core.engine.stream import Options, module_device
from saliency_core.errors import CancelledError, SaliencyError
from saliency_core.params import MethodParams, Model, Target

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CHUNK = 32
DEFAULT_MAP_SIZE = 32
DELETION_STEPS = 16


@dataclass
class DatasetExplanation:
    """What ``explain_dataset`` returns: compact maps, predictions and measures per image.

    Attributes:
        names: Each explained image's name (its path inside the folder or archive), [N].
        maps: float32 [N, map_size, map_size], non-negative: the method's map reduced over
            channels (absolute values summed) and average-pooled; raw scale, not normalised.
        predicted: int64 [N], each image's top class.
        probabilities: float32 [N, K], softmax of the logits.
        labels: The true label of each image (a string), None where unknown.
        class_names: The model's class names (indices as strings for a plain module).
        errors: The files that were not explained, each with a message.
        method: The method's name.
        params: The method's parameters as given.
        target: The target as given ("predicted" unless told).
        model_name: The model's name (its class name for a plain module).
        complete: False when Stop ended the run early (what was done is kept).
        deletion_auc: float [N] when asked for (``deletion=True``), else None.
        images: The ``ImageSet`` read; ``images.image(i)`` re-reads an input picture.
        indices: For each explained image, its index in ``images``.

    Example:
        >>> import numpy as np, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> pics = [np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)]
        >>> ds = sc.explain_dataset(loaded, pics, "gradcam", labels=["circle", "ring"])
        >>> len(ds), ds.maps.shape, ds.labels
        (2, (2, 32, 32), ['circle', 'ring'])
        >>> sorted(ds.measures())
        ['border', 'concentration', 'corners', 'top10_mass']
    """

    names: list[str]
    maps: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray
    labels: list[str | None]
    class_names: list[str]
    errors: list[FileError] = field(default_factory=list)
    method: str = ""
    params: dict = field(default_factory=dict)
    target: Any = "predicted"
    model_name: str = ""
    complete: bool = True
    deletion_auc: np.ndarray | None = None
    images: ImageSet | None = field(default=None, repr=False)
    indices: list[int] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def predicted_names(self) -> list[str]:
        return [self.class_names[int(i)] for i in self.predicted]

    @property
    def confidence(self) -> np.ndarray:
        """The probability of each image's predicted class."""
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        return self.probabilities[np.arange(len(self)), self.predicted]

    @property
    def correct(self) -> list[bool | None]:
        """Whether the predicted class name equals the true label (any case); None if unknown."""
        return [None if t is None else p.lower() == t.lower()
                for p, t in zip(self.predicted_names, self.labels, strict=True)]

    def measures(self) -> dict[str, np.ndarray]:
        """Per-map measures (``saliency_core.datasets.measures``).

        Returns:
            {name: float [N]}: concentration (Gini of the map: 0 flat, near 1 one pixel),
            top10_mass (share of the mass in the top 10 % of pixels), border and corners
            (shares of the mass on the frame and in the four corner squares) and, when
            computed, deletion_auc.
        """
        out = {"concentration": measures.gini(self.maps),
               "top10_mass": measures.top_mass(self.maps, 0.1),
               "border": measures.border_share(self.maps),
               "corners": measures.corner_share(self.maps)}
        if self.deletion_auc is not None:
            out["deletion_auc"] = self.deletion_auc
        return out

    @property
    def table(self) -> pd.DataFrame:
        """One row per image: file, predicted, true, confidence, correct, concentration
        (Gini of the map), top10_mass, border and corners (mass shares) and, when computed,
        deletion_auc."""
        import pandas as pd

        columns: dict[str, Any] = {
            "file": self.names,
            "predicted": self.predicted_names,
            "true": pd.array(self.labels, dtype="string"),
            "confidence": self.confidence.astype(np.float64),
            "correct": pd.array(self.correct, dtype="boolean"),
        }
        columns.update({k: v.astype(np.float64) for k, v in self.measures().items()})
        return pd.DataFrame(columns)

    def errors_table(self) -> pd.DataFrame:
        """The files left out.

        Returns:
            A DataFrame with columns file and problem, one row per file.
        """
        import pandas as pd

        return pd.DataFrame({"file": [e.file for e in self.errors],
                             "problem": [e.message for e in self.errors]})


def settings_key(model, method: str, params: dict, target, map_size: int) -> str:
    """What a cached map depends on besides its image (model, method, settings, target, size)."""
    name = getattr(model, "name", type(getattr(model, "model", model)).__name__)
    described = json.dumps({"model": name, "method": method, "params": params,
                            "target": target if isinstance(target, (int, str)) else repr(target),
                            "map_size": map_size}, sort_keys=True, default=repr)
    return hashlib.sha256(described.encode()).hexdigest()[:24]


def compact_maps(attribution: torch.Tensor, map_size: int) -> np.ndarray:
    """Attribution [N, C, H, W] or [N, H, W] -> float32 [N, s, s]: absolute values summed over
    channels, average-pooled (mass kept in proportion, so shares of the map stay true)."""
    a = attribution.detach().float()
    a = a.abs().sum(1) if a.dim() == 4 else a.abs()
    pooled = F.adaptive_avg_pool2d(a[:, None], (map_size, map_size))[:, 0]
    return pooled.cpu().numpy().astype(np.float32)


def _to_input(model, picture) -> torch.Tensor:
    preprocess = getattr(model, "preprocess", None)
    if callable(preprocess):
        return preprocess(picture)
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)
    return pixels.permute(2, 0, 1)[None]


def _device(model) -> torch.device:
    return module_device(getattr(model, "model", model))


def _cancelled(cancel) -> bool:
    return Options(cancel=cancel).cancelled()


def explain_dataset(  # type: ignore[misc]  # progress counts images here, not passes
    model: Model, images: Any, method: str, *, labels: Any = None,
    target: Target = "predicted", map_size: int = DEFAULT_MAP_SIZE,
    progress: Callable[[int, int], None] | None = None, chunk: int = DEFAULT_CHUNK,
    deletion: bool = False, cache: MutableMapping[str, tuple] | None = None,
    engine: Any = None, limits: DatasetLimits | None = None, **params: Unpack[MethodParams],
) -> DatasetExplanation:
    """Explain every image of a folder, an archive or a list, keeping compact maps and measures.

    Args:
        model: A ``LoadedModel`` (its preprocessing resizes every image) or an ``nn.Module``
            (then all images must have one size; pixels go in as [0, 1]).
        images: A folder (labels from sub-folder names or a ``labels.csv`` of file,label), a
            zip archive (path or bytes), or a list of PIL images, arrays [H, W, 3] or paths;
            also an ``ImageSet`` from ``open_images``.
        method: A method name (``saliency_core.methods()``).
        labels: True labels: one per image, {file: label}, or a CSV path; None: from folders.
        target: As for ``explain`` ("predicted", a class index or name, ...).
        map_size: The side of the kept maps.
        progress: ``progress(images_done, images_total)`` after every chunk (and within it).
        chunk: Images per ``explain`` call (the engine splits a chunk further by memory).
        deletion: Also score each map by its deletion curve's AUC (16 steps; forward passes
            only), the ``deletion_auc`` column.
        cache: A mapping kept between runs: images seen with the same settings are not
            computed again (the app's rerun).
        engine: An object with ``explain`` like ``saliency_core.engines.LocalEngine`` or
            ``saliency_core.remote.Client`` (default: this process).
        limits: ``DatasetLimits`` for folders and archives (default: from the environment).
        **params: The method's parameters, e.g. ``steps=32`` or ``layer="layer4"``, and the
            engine options; ``cancel`` (an Event, or a callable returning True) stops the run
            and keeps the images done.

    Returns:
        A ``DatasetExplanation``; files that could not be read are in its ``errors``, never
        raised.

    Raises:
        DatasetError: The dataset as a whole is refused (too many files, too large).
        SaliencyError: A setting that fails for every image (unknown method, bad parameter).

    Example:
        >>> import numpy as np, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> pics = [np.full((64, 64, 3), v, np.uint8) for v in (0, 128, 255)] + [b"not an image"]
        >>> ds = sc.explain_dataset(loaded, pics, "gradient", map_size=16)
        >>> ds.maps.shape, bool((ds.maps >= 0).all()), len(ds.errors)
        ((3, 16, 16), True, 1)
        >>> " ".join(ds.table.columns[:5])
        'file predicted true confidence correct'
    """
    if map_size < 1:
        raise SaliencyError(f"map_size must be at least 1; got {map_size}")
    params = dict(params)
    cancel = params.pop("cancel", None)
    params.pop("progress", None)
    found = open_images(images, labels, limits)
    class_names = list(getattr(model, "labels", None) or [])
    device = _device(model)
    settings = settings_key(model, method, params, target, map_size) + (":del" if deletion else "")
    explain_fn = engine.explain if engine is not None else _local_explain
    errors = list(found.errors)
    done_maps: list[np.ndarray] = []
    done_probs: list[np.ndarray] = []
    done_auc: list[float] = []
    indices: list[int] = []
    complete = True
    total = len(found)
    size: tuple[int, ...] | None = None
    for start in range(0, total, max(1, chunk)):
        if _cancelled(cancel):
            complete = False
            if cache is None:
                break  # with a cache, the images it holds are still collected below
        batch: list[torch.Tensor] = []
        batch_index: list[int] = []
        keys: list[str] = []
        for i in range(start, min(total, start + max(1, chunk))):
            item = found.items[i]
            try:
                x = _to_input(model, as_picture(item.read()))
            except SaliencyError as exc:
                errors.append(FileError(item.name, str(exc)))
                continue
            if size is None:
                size = tuple(x.shape[1:])
            if tuple(x.shape[1:]) != size:
                errors.append(FileError(item.name, f"{tuple(x.shape[2:])} pixels, unlike the first "
                                        f"image's {size[1:]}; give a LoadedModel to resize."))
                continue
            key = ""
            if cache is not None:
                key = settings + ":" + hashlib.sha256(x.numpy().tobytes()).hexdigest()
                hit = cache.get(key)
                if hit is not None:
                    done_maps.append(hit[0])
                    done_probs.append(hit[1])
                    done_auc.append(hit[2])
                    indices.append(i)
                    continue
            batch.append(x)
            batch_index.append(i)
            keys.append(key)
        if batch and complete:
            try:
                computed = _explain_batch(model, torch.cat(batch).to(device), method, target,
                                          params, explain_fn, map_size, deletion, cancel,
                                          _chunk_progress(progress, start, len(batch), total))
            except CancelledError:
                complete = False
                computed = None
            if computed is not None:
                for j, i in enumerate(batch_index):
                    entry = (computed[0][j], computed[1][j], float(computed[2][j]))
                    done_maps.append(entry[0])
                    done_probs.append(entry[1])
                    done_auc.append(entry[2])
                    indices.append(i)
                    if cache is not None:
                        cache[keys[j]] = entry
        if progress is not None and complete:
            progress(min(total, start + max(1, chunk)), total)
    order = np.argsort(indices, kind="stable")
    indices = [indices[k] for k in order]
    k_classes = done_probs[0].shape[0] if done_probs else len(class_names)
    probabilities = (np.stack([done_probs[k] for k in order]).astype(np.float32) if done_probs
                     else np.zeros((0, k_classes), np.float32))
    if not class_names or len(class_names) != k_classes:
        class_names = [str(c) for c in range(k_classes)]
    return DatasetExplanation(
        names=[found.items[i].name for i in indices],
        maps=(np.stack([done_maps[k] for k in order]) if done_maps
              else np.zeros((0, map_size, map_size), np.float32)),
        predicted=probabilities.argmax(1).astype(np.int64) if len(probabilities) else np.zeros(0, np.int64),
        probabilities=probabilities,
        labels=[found.items[i].label for i in indices],
        class_names=class_names,
        errors=errors,
        method=method,
        params=dict(params),
        target=target,
        model_name=str(getattr(model, "name", type(model).__name__)),
        complete=complete,
        deletion_auc=np.array([done_auc[k] for k in order]) if deletion else None,
        images=found,
        indices=indices,
    )


def _explain_batch(model, x: torch.Tensor, method: str, target, params: dict, explain_fn,
                   map_size: int, deletion: bool, cancel, progress) -> tuple:
    """One chunk through the engine -> (maps [n, s, s], probabilities [n, K], deletion AUC [n]
    or NaN); CancelledError when Stop came in the middle."""
    e = explain_fn(model, x, method, target, progress=progress, cancel=cancel, **params)
    maps = compact_maps(e.attribution, map_size)
    probs = e.probabilities.detach().float().cpu().numpy()
    aucs = np.full(len(x), np.nan)
    if deletion:
        from saliency_core.evaluation.faithfulness import deletion as deletion_curve

        curve = deletion_curve(getattr(model, "model", model), x, e.attribution,
                               e.target.to(x.device), steps=DELETION_STEPS, cancel=cancel)
        aucs = np.asarray(curve.auc, dtype=np.float64)
    return maps, probs, aucs


def _chunk_progress(progress, start: int, n: int, total: int) -> Callable[[int, int], None]:
    """The engine's (points done, points) within a chunk of ``n`` images -> images done."""

    def inner(done: int, points: int) -> None:
        if progress is not None and points:
            progress(min(total, start + int(n * done / points)), total)

    return inner


def _local_explain(model, x, method, target, **params):
    from saliency_core.api import explain

    return explain(model, x, method, target, **params)


def full_map(model, result: DatasetExplanation, i: int, **overrides) -> torch.Tensor:
    """The full-resolution attribution of explained image ``i``, recomputed with the run's
    settings (``overrides`` replace some): what the compact map was pooled from."""
    if result.images is None:
        raise SaliencyError("this result does not keep its images")
    from saliency_core.api import attribute

    x = _to_input(model, result.images.image(result.indices[i])).to(_device(model))
    params = {**result.params, **overrides}
    return attribute(model, x, result.method, result.target, **params)


def eta_seconds(done: int, total: int, elapsed_s: float) -> float | None:
    """Time left at the rate so far, or None before the first image is done."""
    if done <= 0 or total <= done:
        return None if done <= 0 else 0.0
    return elapsed_s / done * (total - done) if math.isfinite(elapsed_s) else None
