"""Running the engine for a page: through the shared result cache, with progress reported.

The engine is in this process by default, reached as ``saliency_core.explain`` /
``saliency_core.attribute_text`` at call time (so tests can count model runs by replacing those
attributes). With ``SALIENCY_ENGINE_URL`` set, the same calls go to the engine service
(saliency_core.remote, no Ray in the app); progress and Stop work the same through it.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import streamlit as st
import torch

import saliency_core
from saliency_core import metrics
from saliency_core.remote import ENGINE_URL_ENV, Client

from .results import (
    ImageResult,
    ResultCache,
    Scoreboard,
    TextResult,
    configured_cache,
    result_key,
)


@st.cache_resource(show_spinner=False)
def result_cache() -> ResultCache:
    return configured_cache()


@st.cache_resource(show_spinner=False)
def _client(url: str) -> Client:
    return Client(url)


def engine_client() -> Client | None:
    """The engine service's client when one is configured, else None (in-process engine)."""
    url = os.environ.get(ENGINE_URL_ENV, "").strip()
    return _client(url) if url else None


def engine_explain(loaded, x: torch.Tensor, method: str, target, **options):
    client = engine_client()
    if client is None:
        return saliency_core.explain(loaded, x, method, target=target, **options)
    return client.explain(loaded.name, x, method, target=target, **options)


def engine_attribute_text(loaded, text: str, method: str, target, **options):
    client = engine_client()
    if client is None:
        return saliency_core.attribute_text(loaded, loaded.tokenizer, text, method,
                                            target=target, **options)
    return client.attribute_text(loaded.name, text, method, target=target, **options)


def pixels_digest(pixels: np.ndarray) -> str:
    """Content hash of an image as the model sees it (before preprocessing)."""
    h = hashlib.sha256(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def image_key(model: str, device: str, digest: str, method: str, params: dict, target) -> str:
    return result_key("image", model, device, digest, method, params, target)


def text_key(model: str, device: str, text: str, method: str, params: dict, target) -> str:
    return result_key("text", model, device, hashlib.sha256(text.encode()).hexdigest(), method,
                      params, target)


def cached(key: str):
    return result_cache().get(key)


def explain_image(loaded, device: str, x: torch.Tensor, digest: str, method: str, params: dict,
                  target, progress=None, cancel=None) -> ImageResult:
    """Attribution for one preprocessed image [1, C, H, W], from the cache when possible."""
    key = image_key(loaded.name, device, digest, method, params, target)
    hit = result_cache().get(key)
    if hit is not None:
        return hit
    explanation = engine_explain(loaded, x, method, target, progress=progress, cancel=cancel,
                                 **params)
    result = image_result(explanation)
    result_cache().put(key, result)
    return result


def image_result(explanation) -> ImageResult:
    """The numpy result a page keeps, from an Explanation of one image."""
    return ImageResult(
        attribution=explanation.attribution[0].detach().float().cpu().numpy(),
        probabilities=explanation.probabilities[0].detach().float().cpu().numpy(),
        target=int(explanation.target[0]),
        predicted=int(explanation.predicted[0]),
        metadata=dict(explanation.metadata),
    )


def explain_text(loaded, device: str, text: str, method: str, params: dict, target,
                 progress=None, cancel=None) -> TextResult:
    key = text_key(loaded.name, device, text, method, params, target)
    hit = result_cache().get(key)
    if hit is not None:
        return hit
    out = engine_attribute_text(loaded, text, method, target, progress=progress, cancel=cancel,
                                **params)
    result = TextResult(
        tokens=list(out.tokens),
        special=list(out.special),
        scores=np.asarray(out.scores, dtype=np.float64),
        probabilities=np.asarray(out.probabilities, dtype=np.float64),
        target=int(out.target),
        predicted=int(out.predicted),
        metadata=dict(out.metadata),
    )
    result_cache().put(key, result)
    return result


def scoreboard(loaded, device: str, x: torch.Tensor, digest: str, runs: dict, target: int,
               mask: np.ndarray | None, progress=None) -> Scoreboard:
    """Deletion/insertion (and, with a mask, localisation) ranking of the methods in ``runs``
    (label -> (cache key, ImageResult)), cached like attributions."""
    key = result_key("scoreboard", loaded.name, device, digest, sorted(k for k, _ in runs.values()),
                     target, mask is not None)
    hit = result_cache().get(key)
    if hit is not None:
        return hit
    attributions = {label: torch.from_numpy(r.attribution)[None] for label, (_, r) in runs.items()}
    rows = metrics.scoreboard(loaded, x, attributions, target=target, mask=mask, progress=progress)
    board = Scoreboard(rows=rows)
    result_cache().put(key, board)
    return board
