"""Per-page session plumbing: restoring a page from a link (or from this session's last visit),
keeping the URL in step with the view, the share-link box, the target-class picker, and the
visitor the jobs layer is told about (ids and this session's store)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode

import streamlit as st

from workbench.jobs.visitor import Visitor
from workbench.ui.urlstate import UrlReader, encode
from workbench.ui.widgets import select

T = TypeVar("T")


def reader_for_visit(prefix: str, widget_key: str) -> UrlReader | None:
    """A reader when this run starts a visit to the page, else None.

    A visit starts when the page's widgets have no state (first load, or back from another
    page, which drops them). The link's query parameters win; without any, the settings this
    session last had on the page come back.
    """
    if widget_key in st.session_state:
        return None
    params = st.query_params.to_dict()
    if not params:
        params = st.session_state.get(f"{prefix}._saved", {})
    return UrlReader(params)


def visitor() -> Visitor:
    """Who this session is, for the queue, the rate limit and the logs; its store is the
    session's own state, so kept refiners and budget confirmations last across reruns."""
    from workbench.hosting import auth

    session_id = st.session_state.setdefault("_session_id", uuid.uuid4().hex[:12])
    return Visitor(session_id, auth.current_user(), st.session_state)


def keep_problems(prefix: str, problems: list[str]) -> None:
    st.session_state[f"{prefix}._problems"] = list(problems)


def problems(prefix: str) -> list[str]:
    return st.session_state.get(f"{prefix}._problems", [])


def kept(key: str, result: object, view: tuple, build: Callable[[], T]) -> T:
    """``build()``, or what it gave last time in this session for the very same ``result``
    object and an equal ``view``: what a display change leaves as it was (the heatmap figure
    for a new opacity, the raw export for a new colormap) is not made again. One entry per key,
    so the session holds at most the last one."""
    last = st.session_state.get(key)
    if last is not None and last[0] is result and last[1] == view:
        return last[2]
    value = build()
    st.session_state[key] = (result, view, value)
    return value


def publish(prefix: str, settings: Mapping[str, Any]) -> dict[str, str]:
    """Write the view's settings into the URL (only when they changed) and return them."""
    encoded = encode(settings)
    if st.query_params.to_dict() != encoded:
        st.query_params.from_dict(encoded)
    st.session_state[f"{prefix}._saved"] = encoded
    return encoded


def share_box(encoded: Mapping[str, str], uploaded: bool = False) -> None:
    """The link to this exact view, in a box with a copy button."""
    base = st.context.url or ""
    link = f"{base}?{urlencode(encoded)}"
    with st.expander("Share this view", icon=":material/link:"):
        st.caption("Copy the link (button at the box's top right); whoever opens it on this "
                   "server sees the same input, model, method, settings and display."
                   + (" The uploaded image is kept on the server under its content hash."
                      if uploaded else ""))
        st.code(link, language=None, wrap_lines=True)


def target_widget(prefix: str, labels: list[str]) -> str | int:
    """Explain the predicted class or any other (searchable by typing in the box)."""
    key = f"{prefix}.target"
    raw = st.session_state.pop(f"{prefix}.target_raw", None)
    if raw is not None:
        value: str | int = "predicted"
        if str(raw) != "predicted":
            try:
                if not str(raw).isascii():  # int() reads "٣" as 3; links carry ASCII
                    raise ValueError
                index = int(str(raw))
                if not 0 <= index < len(labels):
                    raise ValueError
                value = index
            except ValueError:
                st.session_state.setdefault(f"{prefix}._problems", []).append(
                    f"The link's setting target={raw!r} was ignored (the model has classes 0 to "
                    f"{len(labels) - 1}); explaining the predicted class.")
        st.session_state[key] = value
    options: list[str | int] = ["predicted", *range(len(labels))]
    return select("Explain class", options, key, "predicted",
                  format_func=lambda o: "the predicted class" if o == "predicted"
                  else f"{o}: {labels[o]}",
                  help="Type to search the class names.")
