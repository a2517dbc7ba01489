"""Per-page session plumbing: restoring a page from a link (or from this session's last visit),
keeping the URL in step with the view, the share-link box, the target-class picker, and the
visitor the jobs layer is told about (ids and this session's store)."""

from __future__ import annotations

import html
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


SHARE_BUTTON = "Share this view"
# Streamlit has no clipboard call for Python, and its code box shows its copy button only on
# hover: the button is ours. The link travels in a data attribute (html-escaped: a text page's
# link holds the typed text) and is copied by the browser; where the clipboard is refused (a
# plain-http address other than localhost), the link appears selected for Ctrl+C instead.
_SHARE_SCRIPT = """<script>
if (!window.__swShareBound) {
  // One listener on the document, once: Streamlit may redraw the button at any time.
  window.__swShareBound = true;
  document.addEventListener("click", async (event) => {
    const b = event.target.closest && event.target.closest("button.sw-share-link");
    if (!b) return;
    // The note lives outside Streamlit's elements, which may be redrawn under it.
    const note = document.createElement("div");
    note.className = "sw-share-copied";
    note.setAttribute("role", "status");
    const box = b.getBoundingClientRect();
    note.style.cssText = "position:fixed;z-index:1000;padding:.3rem .7rem;border-radius:.5rem;"
      + "background:#1f2937;color:#fff;font:inherit;font-size:.875rem;"
      + `left:${box.left}px;top:${box.bottom + 6}px`;
    try {
      await navigator.clipboard.writeText(b.dataset.link);
      note.textContent = "Link copied";
    } catch (e) {
      const fallback = b.parentElement.querySelector("input.sw-share-fallback");
      fallback.value = b.dataset.link; fallback.hidden = false;
      fallback.focus(); fallback.select();
      note.textContent = "Press Ctrl+C to copy the link";
    }
    document.body.appendChild(note);
    setTimeout(() => note.remove(), 2500);
  });
}
</script>"""
# The icon font Streamlit's own icons use (st.html drops inline SVG).
_LINK_ICON = '<span class="sw-share-icon" aria-hidden="true" translate="no">link</span>'
_SHARE_STYLE = """<style>
.sw-share-row{display:flex;align-items:center;gap:.75rem;flex-wrap:wrap;font-family:inherit}
button.sw-share-link{display:inline-flex;align-items:center;gap:.4rem;padding:.35rem .8rem;
  border:1px solid rgba(49,51,63,.25);border-radius:.5rem;background:transparent;
  color:inherit;font:inherit;cursor:pointer}
button.sw-share-link:hover{border-color:#ff4b4b;color:#ff4b4b}
.sw-share-icon{font-family:"Material Symbols Rounded";font-size:1.25rem;line-height:1;
  font-weight:normal;font-style:normal;letter-spacing:normal;text-transform:none;
  white-space:nowrap;direction:ltr;-webkit-font-smoothing:antialiased}
.sw-share-note{font-size:.875rem;opacity:.65}
input.sw-share-fallback{flex:1 1 100%;font:inherit;font-size:.8rem;padding:.25rem}
</style>"""


def share_link(encoded: Mapping[str, str]) -> str:
    """The address that opens this exact view."""
    return f"{st.context.url or ''}?{urlencode(encoded)}"


def share_box(encoded: Mapping[str, str], uploaded: bool = False) -> None:
    """One visible button that copies the link to this exact view."""
    link = html.escape(share_link(encoded), quote=True)
    note = ("Whoever opens the link on this server sees the same input, model, method, "
            "settings and display."
            + (" The uploaded image is kept on the server under its content hash."
               if uploaded else ""))
    st.html(
        f'{_SHARE_STYLE}<div class="sw-share-row">'
        f'<button type="button" class="sw-share-link" data-link="{link}" '
        f'title="Copy a link to this view">'
        f'{_LINK_ICON}<span class="sw-share-label">{SHARE_BUTTON}</span>'
        f'</button><span class="sw-share-note">{html.escape(note)}</span>'
        f'<input class="sw-share-fallback" readonly hidden aria-label="Link to this view">'
        f'</div>{_SHARE_SCRIPT}',
        unsafe_allow_javascript=True)


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
