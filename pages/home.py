"""Home page: what the workbench is for, where to go, and which models this server has."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import saliency_core.models as sc_models
from workbench.ui.navigation import ensure_app_navigation

ensure_app_navigation()

st.title("Saliency workbench")
st.write("Which pixels or tokens made a neural network decide what it decided? Explain image and "
         "text classifiers with gradient saliency methods, compare the methods, check whether "
         "they depend on the model at all, and export or share what you found.")

PAGES = [
    ("pages/image.py", "Image", ":material/image:",
     ("Upload a picture or pick a sample, choose a model and a method, and see the original, the "
     "heatmap and the overlay side by side.")),
    ("pages/text.py", "Text", ":material/notes:",
     "Type a sentence; see which tokens pushed the classifier towards its answer."),
    ("pages/compare.py", "Compare", ":material/grid_view:",
     "Several methods (and two models) on one input, with timings and a faithfulness scoreboard."),
    ("pages/dataset.py", "Dataset", ":material/photo_library:",
     ("A whole folder of images: a gallery of maps and the model's strategies as clusters, "
     "where shortcuts such as watermarks show up.")),
    ("pages/sanity.py", "Sanity checks", ":material/rule:",
     "Randomize the model and see which methods notice."),
    ("pages/models.py", "Models", ":material/deployed_code:",
     "What is bundled, cached or missing; fetch weights or bring your own."),
    ("pages/guide.py", "Guide", ":material/menu_book:",
     "What each method computes, when it fails, and how to choose baselines and layers."),
]
START = ("New here? Start on the Image page: a sample photo and a model are ready there, and "
         "its first map appears by itself.")
with st.container(key="home-start"):
    st.markdown(f"**{START}**")
    st.page_link("pages/image.py", label="Open the Image page", icon=":material/arrow_forward:")

# A card is one link: its page link's click area is stretched over the whole card, so the
# blurb and the empty space around it open the page too (within this session, as any
# st.page_link does; a plain <a> around the card would reload the app and lose the session).
st.html("<style>"
        "div[class*='st-key-home-card-']{position:relative;transition:border-color .15s}"
        # Streamlit positions each element's box; the link's area must reach the card's.
        "div[class*='st-key-home-card-'] [data-testid='stElementContainer']{position:static}"
        "div[class*='st-key-home-card-']:hover{border-color:#ff4b4b}"
        "div[class*='st-key-home-card-'] [data-testid='stPageLink'] a::after"
        "{content:'';position:absolute;inset:0;z-index:1}"
        "</style>")
here = Path(__file__).resolve().parent.parent
shown = [p for p in PAGES if (here / p[0]).exists()]
for row in range(0, len(shown), 3):
    for col, (path, title, icon, blurb) in zip(st.columns(3), shown[row:row + 3]):
        with col, st.container(border=True, key=f"home-card-{Path(path).stem}"):
            st.page_link(path, label=title, icon=icon)
            st.caption(blurb)

infos = sc_models.available_models()
ready = [i for i in infos if i.present]
st.subheader("Models on this server")
st.write(", ".join(f"`{i.name}`" for i in ready) or "none yet")
missing_zoo = sum(1 for i in infos if i.source == "zoo" and not i.present)
if missing_zoo:
    st.caption(f"{missing_zoo} zoo models (ResNet, VGG, ViT, DistilBERT, ...) are not fetched; "
               "the Models page fetches them when the server has network access.")
