"""What the Sanity page keeps in step with its model: the input, the model trained on shuffled
labels, and which earlier result may still be shown."""

from __future__ import annotations

from typing import Any

import streamlit as st

from saliency_core import evaluation
from workbench.ui.inputs import default_sample
from workbench.ui.plaintext import plain

NO_PARTNER = "(none)"


def _family(source: str) -> str:
    # A watermarked shape is still a shape: both fit the shapes models.
    kind = source.partition(":")[0]
    return "shapes" if kind in ("shapes", "shapes-wm") else kind


def sample_fits(model_name: str, source: str) -> bool:
    """Whether a sample is of the kind the model was trained on (photos for ImageNet models,
    generated shapes for the shapes models)."""
    return _family(source) == _family(default_sample(model_name))


def partner_options(model_name: str, names: list[str]) -> tuple[list[str], str]:
    """The models to compare with, and the default: the model's shuffled-label twin if it is
    here, else none (any other model would be a guess, and most are another architecture)."""
    options = [NO_PARTNER] + [n for n in names if n != model_name]
    twin = evaluation.random_labels_partner(model_name)
    return options, twin if twin in options else NO_PARTNER


def follow_model(prefix: str, model_name: str, names: list[str]) -> None:
    """When the model changes, the sample and the partner chosen for the old one go with it.

    Call after the model picker and before the input and partner widgets. A link (or a return
    to the page) sets all three together; call ``settled`` then so they are kept as given.
    """
    seen = st.session_state.get(f"{prefix}.for_model")
    if seen is not None and seen != model_name:
        sample = st.session_state.get(f"{prefix}.sample")
        if st.session_state.get(f"{prefix}.mode", "Sample") == "Sample" and \
                (sample is None or not sample_fits(model_name, sample)):
            st.session_state[f"{prefix}.sample"] = default_sample(model_name)
        st.session_state[f"{prefix}.partner"] = partner_options(model_name, names)[1]
    settled(prefix, model_name)


def settled(prefix: str, model_name: str) -> None:
    st.session_state[f"{prefix}.for_model"] = model_name


def no_partner_note(model_name: str, names: list[str]) -> str:
    """What the data randomization test needs, when no partner is chosen, and how to get one."""
    twin = evaluation.random_labels_partner(model_name)
    model_name = plain(model_name)  # an uploaded model's name is the user's text
    what = ("The data randomization test compares with the same architecture trained on "
            "shuffled labels (randomly permuted, so it learns nothing true about the images).")
    if twin is None:
        return (f"No model trained on shuffled labels is known for {model_name}, so only the "
                f"parameter randomization test runs. {what} The bundled shapes-cnn has one: "
                "`saliency train-bundled` makes it (shapes-cnn-random-labels). Another model's "
                "architecture has to be trained on shuffled labels; a torchvision "
                "architecture's weights can then be brought on the Models page.")
    if twin not in names:
        return (f"{model_name}'s twin {twin} is not on this machine. {what} "
                f"`saliency train-bundled --only {twin}` makes it.")
    return f"Not run: choose {twin} in the sidebar. {what}"


def remember(prefix: str, key: str, result: Any, model_name: str, view, label: str) -> None:
    """Keep the last result with what it was computed on, for a later run of the page."""
    st.session_state[f"{prefix}.result"] = {"key": key, "result": result, "model": model_name,
                                            "view": view, "label": label}


def previous(prefix: str, model_name: str) -> dict | None:
    """The last result if it was computed on this model, else None: a result is only read
    against its own model's labels and layers, never another's."""
    last = st.session_state.get(f"{prefix}.result")
    if last is None or last.get("model") != model_name:
        return None
    return last
