"""Running one page under Streamlit's AppTest, shared by the app tests."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest

_ESCAPED = re.compile(r"\\(.)")


def shown(markdown: str) -> str:
    """What a reader sees of Markdown source whose user-supplied parts were escaped."""
    return _ESCAPED.sub(r"\1", markdown)


def run_app_page(path: str, query: dict | None = None, timeout: float = 180) -> AppTest:
    """Run the page with the given URL query parameters; fail on any exception it shows."""
    at = AppTest.from_file(path, default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
