"""The browser harness itself: it must see an exception box when a script raises, and the
server helper must report a script that cannot start instead of hanging."""

from __future__ import annotations

import pytest
from support.browser import (
    OUTPUT_DIR,
    assert_no_exception,
    exception_texts,
    open_app,
    serve_streamlit,
)

RAISING_SCRIPT = """
import streamlit as st

st.title("About to fail")
raise RuntimeError("harness-sentinel-error")
"""


@pytest.mark.browser
def test_assert_no_exception_fails_on_exception_box(tmp_path, page):
    script = tmp_path / "raising_app.py"
    script.write_text(RAISING_SCRIPT)
    with serve_streamlit(script.name, cwd=tmp_path, log_path=OUTPUT_DIR / "raising_app.log") as url:
        open_app(page, url)
        texts = exception_texts(page)
        assert any("harness-sentinel-error" in text for text in texts), texts
        with pytest.raises(pytest.fail.Exception, match="harness-sentinel-error"):
            assert_no_exception(page)


def test_serve_streamlit_fails_fast_when_server_cannot_start(tmp_path):
    # Streamlit exits at once for a script that does not exist; the helper must say so
    # with the log rather than wait out the health timeout.
    server = serve_streamlit(
        "missing.py", cwd=tmp_path, log_path=tmp_path / "log.txt", health_timeout_s=30
    )
    with pytest.raises(pytest.fail.Exception, match="exited with code"), server:
        pass  # pragma: no cover - must not be reached
