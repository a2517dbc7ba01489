"""Bring your own model: uploaded safetensors weights for a zoo architecture, or a Hugging Face
text classifier folder that the server's configuration allows.

Uploads are parsed only by ``safetensors`` (plain tensors, nothing executed or unpickled) and
checked against the architecture before loading, so a wrong file gets a short list of what does
not fit instead of a traceback. Folders are read with ``local_files_only`` and without remote
code, and only inside folders listed in ``SALIENCY_HF_ALLOWLIST`` (separated by commas or the
platform's path separator).
"""

from __future__ import annotations

import copy
import hashlib
import json
import operator
import os
import unicodedata
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors_bytes

from saliency_core.errors import SaliencyError
from saliency_core.models import hf_text, timm_zoo, torchvision_zoo
from saliency_core.models.base import ModelInfo

ALLOWLIST_ENV = "SALIENCY_HF_ALLOWLIST"
FOLDER_PREFIX = "folder:"
_MAX_LISTED = 4  # mismatches named in a message; the rest are counted
MAX_NAME_CHARS = 80
MAX_LABEL_CHARS = 200
# Weights are floating point; integer tensors are only the BatchNorm step counters.
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def checked_upload(arch: str, data, num_classes, labels) -> tuple[bytes, int, list[str], str]:
    """The upload's arguments checked before anything is read: (data, num_classes, labels,
    sha256 prefix of the file)."""
    if arch not in torchvision_zoo.ARCHITECTURES and not timm_zoo.is_timm_name(arch):
        raise SaliencyError(
            f"Uploads must be for one of: {', '.join(torchvision_zoo.ARCHITECTURES)}, or a timm "
            f"architecture as timm:<name> (got {arch!r})."
        )
    if timm_zoo.is_timm_name(arch):
        timm_zoo.pretrained_cfg(arch)  # an unknown timm name is refused before anything is read
    num_classes = _checked_class_count(num_classes)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SaliencyError("Upload the weights file's bytes.")
    data = bytes(data)
    labels = _checked_labels(labels, num_classes)
    return data, num_classes, labels, hashlib.sha256(data).hexdigest()[:10]


def build_uploaded(arch: str, data: bytes, num_classes: int) -> torch.nn.Module:
    """``arch`` with ``num_classes`` outputs and the uploaded weights, in eval mode; a file that
    does not fit or holds unusable values is refused with what is wrong."""
    state = _read_safetensors(data)
    state = _strip_wrapper_prefix(state)
    if timm_zoo.is_timm_name(arch):
        import timm

        model = timm.create_model(arch.removeprefix(timm_zoo.PREFIX), pretrained=False,
                                  num_classes=num_classes)
    else:
        state = torchvision_zoo.rename_legacy_keys(arch, state)
        model = torchvision_zoo.build_architecture(arch, num_classes)
    problems = _mismatches(model, state)
    if problems:
        raise SaliencyError(
            f"The file does not fit {arch} with {num_classes} classes: {'; '.join(problems)}."
        )
    problems = _bad_values(model, state)
    if problems:
        raise SaliencyError(f"The file's weights cannot be used: {'; '.join(problems)}.")
    model.load_state_dict(state)
    model.eval()
    return model


def uploaded_factory(name: str, arch: str, model: torch.nn.Module, labels: list[str], card: dict):
    """device -> LoadedModel for an uploaded model (the CPU instance itself, a copy elsewhere)."""

    def factory(target: torch.device):
        instance = model if target.type == "cpu" else copy.deepcopy(model).to(target)
        if timm_zoo.is_timm_name(arch):
            return timm_zoo.timm_loaded_model(name, instance, labels, "uploaded", card)
        return torchvision_zoo.image_loaded_model(
            name, arch, instance, labels, "uploaded", card
        )

    return factory


def uploaded_info(name: str, arch: str, num_classes: int, model: torch.nn.Module) -> ModelInfo:
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return ModelInfo(name, "image", "uploaded", True, size,
                     f"Uploaded weights for {arch}, {num_classes} classes")


def checked_name(name) -> str:
    name = "" if name is None else str(name).strip()
    if len(name) > MAX_NAME_CHARS:
        raise SaliencyError(f"A model name may have at most {MAX_NAME_CHARS} characters.")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise SaliencyError("A model name may not contain control or invisible characters.")
    return name


def _bad_values(model: torch.nn.Module, state: dict) -> list[str]:
    """Tensors whose type or values cannot be weights: integer or boolean tensors where the
    model has floating-point ones (int8-quantised files), NaN or infinite values."""
    expected = model.state_dict()
    wrong_type = [
        f"{k} is {str(state[k].dtype).removeprefix('torch.')}"
        for k in expected
        if k in state
        and expected[k].is_floating_point()
        and state[k].dtype not in _FLOAT_DTYPES
    ]
    not_finite = [
        k
        for k in expected
        if k in state
        and state[k].is_floating_point()
        and not bool(torch.isfinite(state[k]).all())
    ]
    problems = []
    not_float = ("tensors are not floating point (quantised weights are not supported; save "
                 "the float model)")
    for label, items in (
        (not_float, wrong_type),
        ("tensors hold NaN or infinite values", not_finite),
    ):
        if items:
            shown = ", ".join(items[:_MAX_LISTED])
            more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
            problems.append(f"{len(items)} {label} ({shown}{more})")
    return problems


def parse_labels(data: bytes | str) -> list[str]:
    """Class names from a labels file: a JSON list, a JSON {index: name} object, or one per line."""
    text = (
        data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    )
    labels = _parse_labels_text(text)
    if not labels:
        raise SaliencyError("The labels file holds no class names.")
    return labels


def _parse_labels_text(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise SaliencyError(
                f"The labels file looks like JSON but is not valid: {exc}"
            ) from exc
        if isinstance(parsed, dict):
            try:
                items = sorted((int(key), str(value)) for key, value in parsed.items())
            except ValueError as exc:
                raise SaliencyError(
                    "A JSON labels object needs integer keys (class indices)."
                ) from exc
            if [index for index, _ in items] != list(range(len(items))):
                raise SaliencyError(
                    "A JSON labels object must cover indices 0, 1, 2, ... without gaps."
                )
            return [value for _, value in items]
        if isinstance(parsed, list):
            return [str(item) for item in parsed]
        raise SaliencyError("A JSON labels file must hold a list or an object.")
    return [line.strip() for line in text.splitlines() if line.strip()]


def allowed_roots() -> list[Path]:
    raw = os.environ.get(ALLOWLIST_ENV, "")
    parts = [p.strip() for chunk in raw.split(",") for p in chunk.split(os.pathsep)]
    return [Path(p).expanduser().resolve() for p in parts if p]


def allowed_folders() -> dict[str, Path]:
    """Model folders the configuration allows, by name (``folder:<directory name>``).

    An allow-list entry is a model folder itself (it has config.json) or a folder whose direct
    subfolders are model folders.
    """
    found: dict[str, Path] = {}
    for root in allowed_roots():
        if (root / "config.json").is_file():
            candidates = [root]
        elif root.is_dir():
            candidates = sorted(
                p for p in root.iterdir() if (p / "config.json").is_file()
            )
        else:
            candidates = []
        for folder in candidates:
            name, n = FOLDER_PREFIX + folder.name, 2
            while name in found and found[name] != folder:
                name, n = f"{FOLDER_PREFIX}{folder.name}~{n}", n + 1
            found[name] = folder
    return found


def _checked_class_count(num_classes) -> int:
    try:
        if isinstance(num_classes, bool):
            raise TypeError
        count = operator.index(
            num_classes
        )  # any integer type, no silent float rounding
    except TypeError:
        count = 0
    if count < 1:
        raise SaliencyError(
            f"The number of classes must be a positive integer, got {num_classes!r}."
        )
    return count


def _checked_labels(labels, num_classes: int) -> list[str]:
    if labels is None:
        return [f"class {i}" for i in range(num_classes)]
    labels = [str(label) for label in labels]
    if any(len(label) > MAX_LABEL_CHARS for label in labels):
        raise SaliencyError(f"Class names may have at most {MAX_LABEL_CHARS} characters each.")
    if len(labels) != num_classes:
        raise SaliencyError(
            f"The labels list has {len(labels)} names but the model has {num_classes} classes."
        )
    return labels


def _read_safetensors(data: bytes) -> dict[str, torch.Tensor]:
    try:
        state = load_safetensors_bytes(data)
    # The parser raises its own error types for every malformed file.
    except Exception as exc:
        raise SaliencyError(
            "This is not a readable safetensors file (save weights with "
            "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')): "
            f"{hf_text.first_line(exc)}"
        ) from exc
    if not state:
        raise SaliencyError("The safetensors file holds no tensors.")
    return state


def _strip_wrapper_prefix(state: dict) -> dict:
    """Weights saved from DataParallel / torch.compile wrappers carry a prefix on every key."""
    for prefix in ("module.", "_orig_mod."):
        if all(key.startswith(prefix) for key in state):
            return {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _mismatches(model: torch.nn.Module, state: dict) -> list[str]:
    expected = model.state_dict()
    # BatchNorm fills in a missing step counter itself; files without it are fine.
    missing = [
        k for k in expected if k not in state and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k} is {list(state[k].shape)} in the file, {list(expected[k].shape)} in the model"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
    ):
        if items:
            shown = ", ".join(items[:_MAX_LISTED])
            more = (
                f" and {len(items) - _MAX_LISTED} more"
                if len(items) > _MAX_LISTED
                else ""
            )
            problems.append(f"{len(items)} {label} ({shown}{more})")
    return problems
