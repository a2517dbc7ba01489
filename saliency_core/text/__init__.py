"""Text models: token saliency of sequence classifiers (``classifier``) and next-token
attribution of causal language models (``generation``)."""

from __future__ import annotations

from saliency_core.text.classifier import TextAttribution, TextRefiner, attribute_text
from saliency_core.text.generation import GenerationAttribution, attribute_generation

__all__ = ["GenerationAttribution", "TextAttribution", "TextRefiner", "attribute_generation", "attribute_text"]
