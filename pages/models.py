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
weights_mb = uploads.weights_limit_mb()
sizes = {i.name: i.size_bytes for i in infos if i.source == "zoo"}


def _arch_row(arch: str) -> str:
    full = sizes.get(arch) or torchvision_zoo.size_bytes(arch)
    fits = ("yes" if full <= weights_mb * 2**20 else
            "in half precision" if full / 2 <= weights_mb * 2**20 else "no")
    return (f"| `{arch}` | {torchvision_zoo.ARCHITECTURES[arch].description} | "
            f"{_size(full)} | {_size(full // 2)} | {fits} |")


st.markdown(
    "Fine-tuned your own copy of one of these torchvision architectures? Bring its weights and "
    "explain it here, with any number of classes. Sizes are for 1,000 classes.\n\n"
    "| architecture | | float32 file | float16 file | fits the limit |\n|---|---|---|---|---|\n"
    + "\n".join(_arch_row(arch) for arch in torchvision_zoo.ARCHITECTURES))
st.markdown(
    "- **Format**: the model's state dict as one `.safetensors` file: "
    "`safetensors.torch.save_file(model.state_dict(), 'model.safetensors')`. Tensors may be "
    "float32, float16 or bfloat16; half precision is converted to float32 when loaded. Only "
    "plain tensors are read: pickled checkpoints (`.pt`, `.pth`, `.bin`, `.ckpt`) are not "
    "accepted, and nothing in a file is executed.\n"
    f"- **Size**: weights up to {weights_mb} MB per file (set by the server); class names "
    f"(optional: one per line, or JSON) up to {uploads.LABELS_MB} MB.\n"
    "- **Where they stay**: in this browser session only, in the server's memory. The model "
    "appears on the image pages for you alone and is dropped when the session ends. A session "
    f"may keep {registry.MAX_PER_OWNER} uploaded models, the server {registry.max_owned()} in "
    "all.\n"
    "- **Other models**: a Hugging Face image classifier or a timm model is brought by its "
    "name instead (below, no file needed).")
with st.form(f"{P}.byo"):
    c1, c2 = st.columns(2)
    with c1:
        arch = st.selectbox("Architecture", list(torchvision_zoo.ARCHITECTURES), key=f"{P}.arch")
        num_classes = st.number_input("Number of classes", 1, 100_000, value=1000, step=1,
                                      key=f"{P}.classes")
        name = st.text_input("Name (optional)", key=f"{P}.name",
                             placeholder="e.g. my-resnet-xrays")
    with c2:
        # Streamlit's server takes any file up to its cap and the browser checks the
        # per-uploader limit: the weights use the whole cap, the labels are re-checked below.
        weights = st.file_uploader("Weights (.safetensors)", type=["safetensors"],
                                   key=f"{P}.weights", max_upload_size=weights_mb)
        labels_file = st.file_uploader("Class names (optional: one per line, or JSON)",
                                       type=["txt", "json"], key=f"{P}.labels",
                                       max_upload_size=uploads.LABELS_MB)
    submitted = st.form_submit_button("Load model", type="primary", key=f"{P}.load")
if submitted:
    if weights is None:
        st.error("Choose a .safetensors weights file first.")
    else:
        try:
            labels = None
            if labels_file:
                uploads.check_size(labels_file.getvalue(), uploads.LABELS_MB, "labels file")
                labels = sc_models.parse_labels(labels_file.getvalue())
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

st.markdown("**By name: any Hugging Face image classifier or timm model.** Type "
            "`hf:<repository>` (e.g. `hf:google/vit-base-patch16-224`, `hf:facebook/deit-small-"
            "distilled-patch16-224`, `hf:microsoft/swin-tiny-patch4-window7-224`) or "
            "`timm:<name>` (e.g. `timm:vit_small_patch16_224.augreg_in21k_ft_in1k`). Nothing else "
            "to set: the preprocessing comes from the model's own configuration, class names "
            "from its labels, and the layer for Grad-CAM, the class, distillation or register "
            "tokens and the patch grid from its architecture. The server fetches the config and "
            "safetensors weights once (from huggingface.co or its `HF_ENDPOINT` mirror); no code "
            "shipped with a model runs. Attention rollout and relevance are offered for "
            "transformers whose attention can be read (ViT, DeiT, BEiT, DINOv2).")
with st.form(f"{P}.by_name"):
    wanted = st.text_input("Model name", key=f"{P}.hub_name",
                           placeholder="hf:google/vit-base-patch16-224")
    fetch_by_name = st.form_submit_button("Fetch", key=f"{P}.fetch_by_name")
if fetch_by_name:
    wanted = (wanted or "").strip()
    source = registry.source_of(wanted) if wanted else None
    if source is None or wanted.startswith("folder:") or not source.downloads:
        st.error("Type a name as hf:<organisation>/<repository> or timm:<model name>.")
    elif source.info(wanted).present:
        st.success(f"{plaintext.plain(wanted)} is already here: pick it on the Image or "
                   "Compare page.")
    elif not admin.is_admin():
        st.info(admin.why_not().replace("NAME", wanted))
    else:
        with st.spinner(f"Fetching {wanted}..."):
            try:
                wb_models.fetch(wanted)
            except SaliencyError as exc:
                plaintext.error(exc)
            else:
                st.success(f"{plaintext.plain(wanted)} is now cached: pick it on the Image or "
                           "Compare page.")

folders = [i for i in infos if i.name.startswith("folder:")]
with st.expander("Hugging Face models from server folders"):
    st.markdown("A server operator can make local Hugging Face folders (image or sequence "
                "classifiers: `config.json`, the weights, and for images "
                "`preprocessor_config.json`) available by listing them in the "
                "`SALIENCY_HF_ALLOWLIST` environment variable (comma-separated). They load "
                "without network and without running any code shipped with the model."
                + ("" if folders else "\n\nNone are configured now."))
    for info in folders:
        st.write(plaintext.plain(f"{info.name}: {info.description} ({_size(info.size_bytes)})"))
