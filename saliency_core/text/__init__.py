"""Text models: token saliency of sequence classifiers (``classifier``)."""

from __future__ import annotations

from saliency_core.text.classifier import TextAttribution, TextRefiner, attribute_text

__all__ = ["TextAttribution", "TextRefiner", "attribute_text"]
