"""Models page: what is bundled, cached or missing (with sizes), fetching, and bring-your-own."""

from __future__ import annotations

import streamlit as st

import saliency_core.models as sc_models
from saliency_core.errors import SaliencyError
from saliency_core.models import registry, torchvision_zoo
from workbench.hosting import admin, uploads
from workbench.jobs import models as wb_models
from workbench.ui import plaintext
from workbench.ui.navigation import ensure_app_navigation

ensure_app_navigation()

P = "models"

st.title("Models")
# The cache's location is the server's business: visitors are told what it is, not where.
st.caption("Bundled models ship with the project and work offline. Zoo models are official "
           "torchvision and Hugging Face weights, fetched once into the server's model cache.")


def _size(size: int | None) -> str:
    if not size:
        return "?"
    return f"{size / 1e6:.1f} MB" if size < 1e9 else f"{size / 1e9:.2f} GB"


def _status(info) -> str:
    if info.source == "bundled":
        return "bundled" if info.present else "missing (regenerate)"
    if info.source == "uploaded":
        return "uploaded"
    return "cached" if info.present else "not fetched"


infos = sc_models.available_models(uploads.session_owner())
st.dataframe(
    [{"model": i.name, "task": i.task, "source": i.source, "status": _status(i),
      "size": _size(i.size_bytes) + ("" if i.present else " (download)"),
      "description": i.description} for i in infos],
    hide_index=True, width="stretch",
)

st.subheader("Fetch zoo weights")
missing = [i for i in infos if i.source == "zoo" and not i.present]
if not missing:
    st.success("Every zoo model is in the cache.")
elif not admin.is_admin():
    st.info(admin.why_not())
else:
    st.caption("Downloads go to the cache folder; a fetched model appears in the model pickers. "
               "This needs network access from the server.")
    cols = st.columns(3)
    for n, info in enumerate(missing):
        with cols[n % 3]:
            if st.button(f"Fetch {info.name} ({_size(info.size_bytes)})", key=f"{P}.fetch.{info.name}",
                         width="stretch"):
                bar = st.progress(0.0, text=f"Fetching {info.name}...")

                def report(done: int, expected: int | None, name=info.name, bar=bar):
                    fraction = min(0.99, done / expected) if expected else 0.0
                    bar.progress(fraction, text=f"Fetching {name}: {done / 1e6:.1f} MB"
                                 + (f" of {expected / 1e6:.0f} MB" if expected else ""))

                try:
                    wb_models.fetch(info.name, on_progress=report)
                except SaliencyError as exc:
                    bar.empty()
                    st.session_state[f"{P}.fetch_message"] = ("error", str(exc))
                else:
                    st.session_state[f"{P}.fetch_message"] = ("success",
                                                              f"{info.name} is now cached.")
                    st.rerun()
message = st.session_state.pop(f"{P}.fetch_message", None)
if message:
    getattr(st, message[0])(message[1])

st.subheader("Bring your own model")
st.caption("Upload fine-tuned weights for one of the zoo architectures as a .safetensors file "
           "(`safetensors.torch.save_file(model.state_dict(), 'model.safetensors')`). Only plain "
           "tensors are read; nothing in the file is executed. The model is yours alone: it "
           "appears on the image pages of this browser session only, and is dropped when the "
           f"session ends. A session may keep {registry.MAX_PER_OWNER} uploaded models, the "
           f"server {registry.max_owned()} in all.")
with st.form(f"{P}.byo"):
    c1, c2 = st.columns(2)
    with c1:
        arch = st.selectbox("Architecture", list(torchvision_zoo.ARCHITECTURES), key=f"{P}.arch")
        num_classes = st.number_input("Number of classes", 1, 100_000, value=1000, step=1,
                                      key=f"{P}.classes")
        name = st.text_input("Name (optional)", key=f"{P}.name",
                             placeholder="e.g. my-resnet-xrays")
    with c2:
        weights = st.file_uploader("Weights (.safetensors)", type=["safetensors"],
                                   key=f"{P}.weights")
        labels_file = st.file_uploader("Class names (optional: one per line, or JSON)",
                                       type=["txt", "json"], key=f"{P}.labels")
    submitted = st.form_submit_button("Load model", type="primary", key=f"{P}.load")
if submitted:
    if weights is None:
        st.error("Choose a .safetensors weights file first.")
    else:
        try:
            labels = sc_models.parse_labels(labels_file.getvalue()) if labels_file else None
            with st.spinner("Checking and loading the weights..."):
                loaded = sc_models.load_uploaded_weights(
                    arch, weights.getvalue(), int(num_classes), labels, name=name or None,
                    device="cpu", owner=uploads.session_owner())
        except SaliencyError as exc:
            plaintext.error(exc)
        else:
            st.success(f"Loaded **{plaintext.plain(loaded.name)}** ({arch}, {len(loaded.labels)} classes). "
                       "Pick it on the Image or Compare page.")

mine = uploads.my_uploads()
if mine:
    st.caption("Your uploaded models: " + plaintext.plain(", ".join(mine)))
    if st.button("Remove my uploaded models", key=f"{P}.remove_uploads"):
        uploads.remove_my_uploads()
        st.rerun()

folders = [i for i in infos if i.name.startswith("folder:")]
with st.expander("Hugging Face text classifiers from server folders"):
    st.markdown("A server operator can make local Hugging Face sequence classifier folders "
                "available by listing them in the `SALIENCY_HF_ALLOWLIST` environment variable "
                "(comma-separated). They load without network and without running any code "
                "shipped with the model." + ("" if folders else "\n\nNone are configured now."))
    for info in folders:
        st.write(plaintext.plain(f"{info.name}: {info.description} ({_size(info.size_bytes)})"))
