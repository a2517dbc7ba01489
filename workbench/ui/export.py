"""Downloadable records of one explanation: the raw attribution (.npz) and a JSON record with
everything needed to reproduce it (model, method, every parameter, seed, target, timings,
completeness). No Streamlit here: the files are plain bytes."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

RECORD_VERSION = 1


def _jsonable(value: Any):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def json_record(**fields) -> bytes:
    record = {"record_version": RECORD_VERSION,
              "created": datetime.now(UTC).isoformat(timespec="seconds"),
              **fields}
    return json.dumps(_jsonable(record), indent=2, sort_keys=False).encode()


def file_stem(*parts: str) -> str:
    safe = ["".join(c if c.isalnum() or c in "-_" else "-" for c in str(p)) for p in parts if p]
    return "_".join(safe)[:120] or "saliency"
