"""User-supplied strings shown as plain text.

Streamlit renders the body of st.error/warning/info/caption/markdown, metric values, headers
and radio options as Markdown (with its own directives such as ``:red[...]`` and
``:material/icon:``, emoji shortcodes and ``$math$``). A file name, a link parameter, an
uploaded model's name or class names are chosen by whoever sends them, so everywhere they are
displayed they go through ``plain()``: every ASCII punctuation character is backslash-escaped
(CommonMark lets any of them be escaped, so the text reads the same; bare URLs are broken
up so they are not turned into links), control and invisible
characters become visible placeholders, and very long strings are cut.
"""

from __future__ import annotations

import string
import unicodedata

import streamlit as st

_ESCAPE = {ord(c): "\\" + c for c in string.punctuation}
# GitHub-flavoured Markdown turns bare "https://...", "www.x" and "a@b.c" into links even when
# their punctuation is escaped; a zero-width space after ":", "." and "@" breaks those patterns
# without changing what is seen.
_ESCAPE.update({ord(c): "\\" + c + "\u200b" for c in ":.@"})
# Format characters (zero-width joiners, bidi overrides) and controls would let a name hide
# or reorder what is shown around it.
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
MAX_SHOWN = 300


def visible(text: object, limit: int = MAX_SHOWN) -> str:
    """The string with control and format characters replaced by U+FFFD and cut to ``limit``
    characters; still raw text (for widgets that do not render Markdown)."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return "".join(
        " " if ch in "\n\r\t" else ("\ufffd" if unicodedata.category(ch) in _HIDDEN_CATEGORIES
                                    else ch)
        for ch in text
    )


def plain(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` made safe to place inside Markdown: it displays literally."""
    return visible(text, limit).translate(_ESCAPE)


def message(text: object) -> str:
    """A whole message that may quote user input (an exception's text, a link problem)."""
    return plain(text, limit=2_000)


def error(text: object) -> None:
    st.error(message(text))


def warning(text: object) -> None:
    st.warning(message(text))


def info(text: object) -> None:
    st.info(message(text))
