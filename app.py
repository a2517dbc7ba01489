"""Streamlit entry point: page config, sign-in (when configured) and navigation over pages/."""

from pathlib import Path

import streamlit as st

from workbench.hosting import auth, signin_return, telemetry
from workbench.ui.boundary import guarded

st.set_page_config(page_title="Saliency workbench", page_icon="🔍", layout="wide")

HERE = Path(__file__).resolve().parent
# Prometheus metrics on their own port when SALIENCY_METRICS_PORT is set (make serve sets it).
telemetry.start_metrics_server()

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/image.py", title="Image", icon=":material/image:", url_path="image"),
    st.Page("pages/text.py", title="Text", icon=":material/notes:", url_path="text"),
    st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:", url_path="compare"),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/photo_library:", url_path="dataset"),
]
# The sanity-check page is written separately; list it once it exists.
if (HERE / "pages" / "sanity.py").exists():
    pages.append(st.Page("pages/sanity.py", title="Sanity checks", icon=":material/rule:",
                         url_path="sanity"))
pages += [
    st.Page("pages/models.py", title="Models", icon=":material/deployed_code:", url_path="models"),
    st.Page("pages/guide.py", title="Guide", icon=":material/menu_book:", url_path="guide"),
]
# Less empty space above each page's title: the navigation bar already sits at the top. Maps
# are sent at the model's resolution and scaled up here, pixel for pixel (no blur).
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:3rem;}"
        "[data-testid='stMain'] [data-testid='stImage'] img{image-rendering:pixelated;}</style>")
# With sign-in on, a visitor who may not use the app sees neither the pages' names nor any page
# (a shared link included): only the sign-in or "not allowed" page.
access = auth.access()
navigation = st.navigation(pages, position="top" if access.allowed else "hidden")
if not access.allowed:
    auth.refuse(access, navigation.url_path)
auth.account_menu(access.user)
if access.user is not None:
    # Signed in from a shared link: the sign-in landed on the home page; back to the link.
    signin_return.resume(pages, navigation)
guarded(navigation.run)
