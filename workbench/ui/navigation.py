"""Keeps every page under app.py's navigation, even on a fresh server's very first request.

Streamlit treats a folder called ``pages/`` next to the main script as an old-style multipage
app until the main script has called ``st.navigation`` once. So if the first request a server
gets is a deep link (say a shared ``/image?...`` link), the page script runs on its own: no
page config, the wrong navigation, no wide layout. The page then switches that mode off and
reruns, which goes through app.py as intended; the link's query parameters are kept.
"""

from __future__ import annotations

import streamlit as st


def ensure_app_navigation() -> None:
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the old mode: nothing to do
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()
