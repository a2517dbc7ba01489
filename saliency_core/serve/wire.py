"""Bytes for tensors and results that cross a process boundary (the engine service, shared
storage): a safetensors blob whose header carries a JSON document. Nothing is ever pickled, so
reading a message can never run code, and tensors come back bit for bit with their dtype.

The safetensors format is an 8-byte little-endian header length, a JSON header, then the raw
tensor bytes; its ``__metadata__`` (string -> string) holds our JSON under one key.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as _load_tensors
from safetensors.torch import save as _save_tensors

from saliency_core import targets
from saliency_core.api import Explanation
from saliency_core.errors import SaliencyError
from saliency_core.text.classifier import TextAttribution

_DOC = "json"
_TENSOR_REF = "__tensor__"
MAX_HEADER_BYTES = 16 * 1024 * 1024


class WireError(SaliencyError):
    """A message that is not a well-formed saliency payload."""


def pack(tensors: dict[str, torch.Tensor], doc: dict) -> bytes:
    """Tensors (moved to the CPU, made contiguous) plus a JSON-able document -> bytes."""
    # A clone owns its storage: safetensors refuses views that share memory with others.
    cpu = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    return _save_tensors(cpu, metadata={_DOC: json.dumps(doc, allow_nan=True)})


def unpack(data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < 8:
        raise WireError("the message is empty or truncated")
    data = bytes(data)
    (length,) = struct.unpack("<Q", data[:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(data):
        raise WireError("the message header is malformed")
    try:
        header = json.loads(data[8:8 + length])
        doc = json.loads(header["__metadata__"][_DOC])
        tensors = _load_tensors(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"the message is malformed ({exc})") from None
    except SafetensorError as exc:
        raise WireError(f"the message's tensors are malformed ({exc})") from None
    if not isinstance(doc, dict):
        raise WireError("the message document is not an object")
    return tensors, doc


def split_tensors(values: dict[str, Any], prefix: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """JSON-able values with every tensor replaced by a reference, and the tensors by name."""
    plain, tensors = {}, {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            tensors[f"{prefix}{name}"] = value
            plain[name] = {_TENSOR_REF: f"{prefix}{name}"}
        elif isinstance(value, np.ndarray):
            tensors[f"{prefix}{name}"] = torch.from_numpy(np.ascontiguousarray(value))
            plain[name] = {_TENSOR_REF: f"{prefix}{name}"}
        else:
            plain[name] = value
    return plain, tensors


def join_tensors(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    out = {}
    for name, value in plain.items():
        if isinstance(value, dict) and set(value) == {_TENSOR_REF}:
            ref = value[_TENSOR_REF]
            if ref not in tensors:
                raise WireError(f"the message refers to a missing tensor {ref!r}")
            out[name] = tensors[ref]
        else:
            out[name] = value
    return out


# ---- structured values (the engine's other calls: several targets, scoreboards, sanity) -----

# The only classes a message may name; decoding builds nothing else, so a message can never
# make the reader import or construct anything it chooses.
DATACLASSES = {
    "TargetAttributions": ("saliency_core.harness.multi_target", "TargetAttributions"),
    "Explanation": ("saliency_core.api", "Explanation"),
    "RandomizationResult": ("saliency_core.evaluation", "RandomizationResult"),
    "DataRandomizationResult": ("saliency_core.evaluation", "DataRandomizationResult"),
    "RandomizationUnit": ("saliency_core.evaluation", "RandomizationUnit"),
    "MapSet": ("saliency_core.evaluation", "MapSet"),
    "Contrast": ("saliency_core.targets", "Contrast"),
}
_KIND = "__kind__"
MODEL_REF = "model"  # a model argument, sent by name and loaded by the service


@dataclass(frozen=True)
class ModelRef:
    """A model argument of a call as the service received it: loaded where the call runs."""

    name: str


def encode_value(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able form of ``value``: tensors and arrays go into ``tensors`` (bit for bit,
    numpy or torch remembered), listed dataclasses by name, models by name."""
    import dataclasses

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (torch.Tensor, np.ndarray)):
        name = f"v{len(tensors)}"
        numpy = isinstance(value, np.ndarray)
        tensors[name] = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        return {_KIND: "tensor", "name": name, "numpy": numpy}
    if isinstance(value, (list, tuple)):
        items = [encode_value(v, tensors) for v in value]
        return items if isinstance(value, list) else {_KIND: "tuple", "items": items}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("only string keys cross the wire")
        return {_KIND: "dict", "items": {k: encode_value(v, tensors) for k, v in value.items()}}
    if dataclasses.is_dataclass(value) and type(value).__name__ in DATACLASSES:
        # Fields kept for notebook display only (an Explanation's inputs) stay behind.
        fields = {f.name: encode_value(getattr(value, f.name), tensors)
                  for f in dataclasses.fields(value) if not f.metadata.get("display_only")}
        return {_KIND: "dataclass", "class": type(value).__name__, "fields": fields}
    if isinstance(value, ModelRef):
        return {_KIND: MODEL_REF, "name": value.name}
    if hasattr(value, "model") and isinstance(getattr(value, "name", None), str):
        return {_KIND: MODEL_REF, "name": value.name}  # a LoadedModel
    if callable(value):
        targets.to_wire(value)  # a target function: raises the error that says what to do
    raise TypeError(f"a {type(value).__name__} value cannot be sent to the engine service")


def decode_value(doc: Any, tensors: dict[str, torch.Tensor], load_model=None) -> Any:
    """The inverse of encode_value; model arguments become ``load_model(name)``, or a
    ModelRef without it."""
    import importlib

    if isinstance(doc, list):
        return [decode_value(v, tensors, load_model) for v in doc]
    if not isinstance(doc, dict):
        return doc
    kind = doc.get(_KIND)
    try:
        if kind == "tensor":
            t = tensors[doc["name"]]
            return t.numpy() if doc.get("numpy") else t
        if kind == "tuple":
            return tuple(decode_value(v, tensors, load_model) for v in doc["items"])
        if kind == "dict":
            return {str(k): decode_value(v, tensors, load_model) for k, v in doc["items"].items()}
        if kind == "dataclass":
            module, name = DATACLASSES[doc["class"]]
            cls = getattr(importlib.import_module(module), name)
            return cls(**{str(k): decode_value(v, tensors, load_model)
                          for k, v in doc["fields"].items()})
        if kind == MODEL_REF:
            name = str(doc["name"])
            return load_model(name) if load_model is not None else ModelRef(name)
    except (KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"the message holds a malformed value ({exc})") from None
    raise WireError(f"the message holds an unknown value kind {kind!r}")


def encode_call(function: str, args: list, kwargs: dict) -> bytes:
    """A request for one of the engine's named calls (service.CALLS) with its arguments."""
    tensors: dict[str, torch.Tensor] = {}
    doc = {"op": "call", "function": function, "args": encode_value(list(args), tensors),
           "kwargs": encode_value(dict(kwargs), tensors)}
    return pack(tensors, doc)


def encode_any(value) -> bytes:
    tensors: dict[str, torch.Tensor] = {}
    return pack(tensors, {"type": "value", "value": encode_value(value, tensors)})


# ---- results -------------------------------------------------------------------------------

def encode_result(result) -> bytes:
    """An Explanation, a TextAttribution or an attribution tensor -> bytes."""
    if isinstance(result, Explanation):
        tensors = {"attribution": result.attribution, "target": result.target,
                   "score": result.score, "predicted": result.predicted,
                   "probabilities": result.probabilities}
        return pack(tensors, {"type": "explanation", "metadata": result.metadata})
    if isinstance(result, TextAttribution):
        tensors = {"attribution": result.attribution,
                   "scores": torch.from_numpy(np.ascontiguousarray(result.scores)),
                   "probabilities": torch.from_numpy(np.ascontiguousarray(result.probabilities))}
        doc = {"type": "text", "tokens": list(result.tokens), "special": list(result.special),
               "target": int(result.target), "predicted": int(result.predicted),
               "metadata": result.metadata}
        return pack(tensors, doc)
    if isinstance(result, torch.Tensor):
        return pack({"attribution": result}, {"type": "attribution"})
    return encode_any(result)


def decode_result(data: bytes):
    tensors, doc = unpack(data)
    kind = doc.get("type")
    try:
        if kind == "value":
            return decode_value(doc["value"], tensors)
        if kind == "attribution":
            return tensors["attribution"]
        if kind == "explanation":
            return Explanation(attribution=tensors["attribution"], target=tensors["target"],
                               score=tensors["score"], predicted=tensors["predicted"],
                               probabilities=tensors["probabilities"],
                               metadata=doc.get("metadata", {}))
        if kind == "text":
            return TextAttribution(tokens=list(doc["tokens"]), special=list(doc["special"]),
                                   scores=tensors["scores"].numpy(),
                                   attribution=tensors["attribution"],
                                   target=int(doc["target"]), predicted=int(doc["predicted"]),
                                   probabilities=tensors["probabilities"].numpy(),
                                   metadata=doc.get("metadata", {}))
    except KeyError as exc:
        raise WireError(f"the result lacks {exc}") from None
    raise WireError(f"unknown result type {kind!r}")


# ---- requests and the response stream of the engine service ---------------------------------

def encode_request(op: str, model: str, method: str, target, params: dict,
                   inputs: torch.Tensor | None = None, text: str | None = None,
                   counts: list[int] | None = None) -> bytes:
    """``counts``: for "refine", the steps or samples of each level of a progressive run."""
    plain, tensors = split_tensors(params, "param.")
    if inputs is not None:
        tensors["inputs"] = inputs
    target = targets.to_wire(target)  # a target function cannot leave this process
    doc = {"op": op, "model": model, "method": method, "target": target, "params": plain,
           "text": text, "counts": counts}
    return pack(tensors, doc)


def decode_request(data: bytes, load_model=None) -> dict:
    tensors, doc = unpack(data)
    if doc.get("op") == "call":
        if not isinstance(doc.get("function"), str):
            raise WireError("a call names its function")
        doc["args"] = decode_value(doc.get("args") or [], tensors, load_model)
        doc["kwargs"] = decode_value(doc.get("kwargs") or {_KIND: "dict", "items": {}},
                                     tensors, load_model)
        if not isinstance(doc["args"], list) or not isinstance(doc["kwargs"], dict):
            raise WireError("a call's arguments are a list and an object")
        return doc
    if doc.get("op") not in ("attribute", "explain", "attribute_text", "refine"):
        raise WireError(f"unknown operation {doc.get('op')!r}")
    if not isinstance(doc.get("model"), str) or not isinstance(doc.get("method"), str):
        raise WireError("a request names its model and method")
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise WireError("params must be an object")
    doc["params"] = join_tensors(params, tensors)
    try:
        doc["target"] = targets.from_wire(doc.get("target"))
    except SaliencyError as exc:
        raise WireError(str(exc)) from None
    doc["inputs"] = tensors.get("inputs")
    if doc["op"] == "attribute_text":
        if not isinstance(doc.get("text"), str):
            raise WireError("attribute_text needs the text")
    elif doc["inputs"] is None:
        raise WireError(f"{doc['op']} needs an inputs tensor")
    if doc["op"] == "refine":
        counts = doc.get("counts")
        if not isinstance(counts, list) or not counts or \
                not all(isinstance(c, int) and c > 0 for c in counts):
            raise WireError("refine needs the counts of its levels (positive integers)")
    return doc


# A response is a stream of frames: one type byte, a 4-byte big-endian length, the payload.
# LEVEL carries an intermediate result (a coarse level of a progressive run) before RESULT.
PROGRESS, HEARTBEAT, RESULT, ERROR, LEVEL = b"P", b"H", b"R", b"E", b"L"
FRAME_KINDS = (PROGRESS, HEARTBEAT, RESULT, ERROR, LEVEL)
MAX_FRAME_BYTES = 2 * 1024 * 1024 * 1024


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def json_frame(kind: bytes, doc: dict) -> bytes:
    return frame(kind, json.dumps(doc).encode())


def read_frame(read) -> tuple[bytes, bytes] | None:
    """(kind, payload) from a ``read(n)`` callable; None at a clean end of stream."""
    head = _read_exactly(read, 5)
    if head is None:
        return None
    kind, (length,) = head[:1], struct.unpack(">I", head[1:])
    if kind not in FRAME_KINDS or length > MAX_FRAME_BYTES:
        raise WireError("the engine's reply is not a saliency stream")
    payload = _read_exactly(read, length) if length else b""
    if payload is None:
        raise ConnectionError("the engine's reply ended in the middle of a message")
    return kind, payload


def _read_exactly(read, n: int) -> bytes | None:
    chunks, have = [], 0
    while have < n:
        chunk = read(n - have)
        if not chunk:
            if have == 0:
                return None
            raise ConnectionError("the engine's reply ended in the middle of a message")
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)
