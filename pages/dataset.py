"""Dataset page: a folder of images through one model and method, browsed as a gallery and
grouped into the model's strategies (spectral relevance analysis), to find shortcuts without
looking at every map."""

from __future__ import annotations

import io
import json
from urllib.parse import urlencode

import numpy as np
import plotly.express as px
import streamlit as st

import saliency_core
from saliency_core.errors import SaliencyError
from saliency_core.evaluation import embed_maps
from workbench.hosting.share import ShareStore
from workbench.jobs import datasets
from workbench.ui import dataset_view as view
from workbench.ui import page, plaintext, progress, session
from workbench.ui.dataset_inputs import (
    DEFAULT_SOURCE,
    SAMPLES,
    UPLOAD_TYPES,
    folder_allowlist,
    source_label,
    store_upload,
    thumbnail_png_bytes,
    try_open,
    upload_limit_mb,
    watermarked_names,
)
from workbench.ui.widgets import ensure, method_params, select, url_method_params

P = "dataset"
METHODS = {spec.name: spec for spec in saliency_core.methods()}
DEFAULT_METHOD = "gradcam"
DEFAULT_MODEL = "shapes-cnn-watermark"
PAGE_SIZE = 24
COLUMNS = 6
EMBED_MAX = 2000
OUTCOMES = {"all": "All", "right": "Right", "wrong": "Wrong", "unknown": "No label"}
GROUPS = {"true": "True class", "predicted": "Predicted class", "all": "All images"}

names = page.start(
    P, "image", "Dataset",
    "Explain a whole folder of images, browse the maps, and let the model's strategies come to "
    "you: the maps of each class are clustered (spectral relevance analysis, Lapuschkin et al. "
    "2019), so a shortcut such as a watermark shows up as a cluster of its own.")
store = ShareStore()
default_model = DEFAULT_MODEL if DEFAULT_MODEL in names else None

# ---- settings from a shared link (or from this session's last visit), applied once ----------
if (reader := page.visit(P)) is not None:
    model0 = page.restore_model(reader, P, names, "image", default=default_model)
    source0 = reader.text("data", DEFAULT_SOURCE, max_chars=200)
    if try_open(source0, store)[0] is None:
        reader.problems.append(f"{try_open(source0, store)[1]} Showing the shapes sample instead.")
        source0 = DEFAULT_SOURCE
    kind0, _, name0 = source0.partition(":")
    st.session_state[f"{P}.mode"] = {"sample": "Sample", "upload": "Upload",
                                     "folder": "Server folder"}[kind0]
    st.session_state[f"{P}.source"] = source0
    if kind0 == "sample":
        st.session_state[f"{P}.sample"] = name0
    if kind0 == "folder":
        st.session_state[f"{P}.folder"] = name0
    page.restore_method(reader, P, METHODS, DEFAULT_METHOD, "image",
                        page.layer_paths(model0, st.session_state[f"{P}.device"]))
    page.restore_target(reader, P)
    st.session_state[f"{P}.deletion"] = reader.flag("deletion", False)
    st.session_state[f"{P}.group"] = reader.choice("group", list(GROUPS), "true")
    st.session_state[f"{P}.sort"] = reader.choice("sort", list(view.SORTS), "confidence")
    st.session_state[f"{P}.requested"] = reader.flag("run", False)
    page.restored(reader, P)


def request_run() -> None:
    progress.clear_stopped()
    st.session_state[f"{P}.requested"] = True


# ---- sidebar: dataset, model, method --------------------------------------------------------
upload_error = None
with st.sidebar:
    st.header("Dataset")
    folders = folder_allowlist()
    modes = ["Sample", "Upload"] + (["Server folder"] if folders else [])
    ensure(f"{P}.mode", "Sample")
    mode = select("Source", modes, f"{P}.mode", "Sample", widget=st.radio, horizontal=True)
    if mode == "Sample":
        sample = select("Sample", list(SAMPLES), f"{P}.sample", DEFAULT_SOURCE.split(":")[1],
                        format_func=lambda n: SAMPLES[n])
        st.session_state[f"{P}.source"] = f"sample:{sample}"
    elif mode == "Server folder":
        folder = select("Folder", list(folders), f"{P}.folder", next(iter(folders)))
        st.session_state[f"{P}.source"] = f"folder:{folder}"
    else:
        limit = upload_limit_mb()
        files = st.file_uploader(
            f"A zip of images, or several images (up to {limit} MB together)", type=UPLOAD_TYPES,
            accept_multiple_files=True, key=f"{P}.files", max_upload_size=limit,
            help="Labels come from the zip's sub-folder names (cat/1.png, dog/2.png) or from a "
                 "labels.csv of file,label rows.")
        if files:
            fingerprint = tuple((f.name, f.size) for f in files)
            if st.session_state.get(f"{P}.upload_fingerprint") != fingerprint:
                try:
                    st.session_state[f"{P}.source"] = store_upload(
                        [(f.name, f.getvalue()) for f in files], store)
                    st.session_state[f"{P}.upload_fingerprint"] = fingerprint
                except SaliencyError as exc:
                    upload_error = str(exc)
        elif not str(st.session_state.get(f"{P}.source", "")).startswith("upload:"):
            st.session_state[f"{P}.source"] = None
    source = st.session_state.get(f"{P}.source")

    st.header("Model")
    model_name, device = page.model_picker(P, names, "image", default=default_model)

with page.stop_on_error():
    loaded = page.load(model_name, device)
    layers = page.layers(model_name, device)

with st.sidebar:
    st.header("Method")
    spec = page.method_picker(P, METHODS, DEFAULT_METHOD)
    method = spec.name
    params = method_params(spec, P, "image", layers, loaded.default_layer, saliency_core.get_method)
    target = session.target_widget(P, loaded.labels)
    ensure(f"{P}.deletion", False)
    deletion = st.checkbox("Deletion AUC per image", key=f"{P}.deletion",
                           help="Also deletes each image's most important pixels first and "
                                "records how fast the probability falls (16 forward steps per "
                                "image; lower is more faithful).")

page.show_problems(P)
if upload_error:
    plaintext.error(upload_error)
if not source:
    st.info("Upload a zip of images (labels from its sub-folders or a labels.csv) or several "
            "images, or pick a sample in the sidebar.")
    st.stop()
images, open_error = try_open(source, store)
if images is None:
    plaintext.error(open_error)
    st.stop()
if model_name.startswith("shapes-") and not source.startswith("sample:shapes"):
    st.info(f"{model_name} was trained on procedural shapes only: for photographs, pick an "
            "ImageNet model.")

key = datasets.run_key(loaded, device, source, method, params, target, deletion)
state = st.session_state.get(f"{P}.result")
result = None
status = st.container()
with status:
    st.caption(f"{plaintext.plain(source_label(source))} · {len(images)} images"
               + (f", {len(images.errors)} file{'s' * (len(images.errors) > 1)} left out"
                  if images.errors else ""))
    if progress.was_stopped(key):
        st.session_state[f"{P}.requested"] = False  # a new setting after Stop waits for Run
        st.warning("Stopped: the images explained before Stop are shown.")
        st.button("Run again", key=f"{P}.rerun", on_click=request_run, type="primary")
        if state is None or state[0] != key:
            partial = datasets.collected(loaded, images, method, params, target, deletion)
            st.session_state[f"{P}.result"] = state = (key, partial)
    elif st.session_state.get(f"{P}.requested") and (state is None or state[0] != key
                                                       or not state[1].complete):
        try:
            with progress.Progress(f"{spec.label} on {len(images)} images", key, f"{P}.stop",
                                   unit="images") as bar:
                done = datasets.explain(session.visitor(), loaded, device, images, source,
                                        method, params, target, deletion, progress=bar)
            st.session_state[f"{P}.result"] = state = (key, done)
        except SaliencyError as exc:
            plaintext.error(exc)
        st.session_state[f"{P}.requested"] = False
    if state is not None:
        result = state[1]
        if state[0] != key:
            st.info("The settings changed since this run: press Run to explain the dataset "
                    "with them. Showing the last run.")
    else:
        st.info(f"Press Run to explain the {len(images)} images with {spec.label} on "
                f"{model_name}.")
    if not st.session_state.get(f"{P}.requested") and not progress.was_stopped(key):
        st.button("Run", key=f"{P}.run", type="primary", on_click=request_run,
                  disabled=state is not None and state[0] == key and state[1].complete,
                  help="Explain every image with these settings (maps already computed with "
                       "them are reused).")

# ---- the URL always describes this view ------------------------------------------------------
settings = {"model": model_name, "device": device, "data": source, "method": method,
            "target": target, **url_method_params(spec, params), "deletion": int(deletion),
            "group": st.session_state.get(f"{P}.group", "true"),
            "sort": st.session_state.get(f"{P}.sort", "confidence"),
            "run": int(result is not None)}
encoded = session.publish(P, settings)
session.share_box(encoded)
if source.startswith("upload:"):
    st.caption("The uploaded dataset is kept on the server under its content hash for the link.")
if result is None or not len(result):
    if result is not None and not result.complete:
        st.info("Stop came before the first images were done; press Run again to go on.")
    elif result is not None:
        st.warning("No image was explained." + (" See the files left out below." if result.errors else ""))
    if images.errors:
        with st.expander(f"Files left out ({len(images.errors)})"):
            st.dataframe([{"file": e.file, "problem": e.message} for e in images.errors])
    st.stop()

table = result.table
stamped = watermarked_names(source)
labelled = any(t is not None for t in result.labels)


def image_link(i: int) -> str:
    """A link opening explained image ``i`` on the Image page with this page's settings."""
    picture = images.image(result.indices[i])
    digest = store.put(thumbnail_png_bytes(picture))
    query = {"model": model_name, "device": device, "input": f"upload:{digest}",
             "method": method, "target": target, **url_method_params(spec, params)}
    return "image?" + urlencode(query)


def thumbnail(i: int) -> np.ndarray:
    kept = st.session_state.setdefault(f"{P}.thumbs", {})
    cache_key = (state[0], i)
    if cache_key not in kept:
        if len(kept) > 400:
            kept.clear()
        pixels = view.model_picture(loaded, images.image(result.indices[i]))
        kept[cache_key] = view.overlay_thumb(pixels, result.maps[i])
    return kept[cache_key]


def caption(i: int) -> str:
    row = table.iloc[i]
    text = f"{plaintext.plain(row['file'], 40)} · {row['predicted']} {row['confidence']:.0%}"
    if isinstance(row["true"], str) and row["true"] != row["predicted"]:
        text += f" (true: {plaintext.plain(row['true'], 30)})"
    if row["file"] in stamped:
        text += " · watermarked"
    return text


def thumbnails(rows: list[int], columns: int = COLUMNS, links: bool = True) -> None:
    for start in range(0, len(rows), columns):
        cells = st.columns(columns)
        for cell, i in zip(cells, rows[start:start + columns], strict=False):
            with cell:
                st.image(thumbnail(i), caption=caption(i), width="stretch",
                         link=image_link(i) if links else None)


accuracy = table["correct"].dropna()
m1, m2, m3, m4 = st.columns(4)
m1.metric("Images explained", f"{len(result)}" + ("" if result.complete else " (stopped)"))
m2.metric("Accuracy", f"{accuracy.mean():.1%}" if len(accuracy) else "no labels",
          help="Predicted class name equal to the true label (from the sub-folders or "
               "labels.csv), over the images that have one.")
m3.metric("Files left out", len(result.errors))
m4.metric("Method", spec.label)
if result.errors:
    with st.expander(f"Files left out ({len(result.errors)})"):
        st.dataframe(result.errors_table(), hide_index=True)

ensure(f"{P}.group", "true" if labelled else "predicted")
group_options = list(GROUPS) if labelled else ["predicted", "all"]
by = select("Group the maps by", group_options, f"{P}.group", group_options[0], widget=st.radio,
            horizontal=True, format_func=lambda g: GROUPS[g],
            help="Strategies are found per group: the maps of one class are clustered.")
kept_strategies = st.session_state.get(f"{P}.strategies")
if kept_strategies is None or kept_strategies[0] != (state[0], by, len(result)):
    with st.spinner("Clustering the maps..."):
        found, _clusters = view.strategies(result, by)
    st.session_state[f"{P}.strategies"] = kept_strategies = ((state[0], by, len(result)), found)
found = kept_strategies[1]
table["cluster"] = view.cluster_column(result, found)

gallery_tab, strategies_tab, table_tab = st.tabs(["Gallery", "Strategies", "Table and export"])

with strategies_tab:
    st.caption("Each row is one cluster of maps: its average map (each map scaled to the same "
               "mass first), then a few members. A cluster whose maps sit in the corners or on "
               "the border is marked: that is where watermarks, logos and frames live.")
    groups = list(dict.fromkeys(s.group for s in found))
    ordered = sorted(groups, key=lambda g: -max(s.corners for s in found if s.group == g))
    for group in ordered:
        members = [s for s in found if s.group == group]
        size = sum(len(s.members) for s in members)
        st.subheader(f"{plaintext.plain(group, 60)}: {size} image{'s' * (size > 1)}, "
                     f"{len(members)} cluster{'s' * (len(members) > 1)}")
        for s in members:
            cells = st.columns(1 + view.MEMBERS_SHOWN)
            acc = "" if s.accuracy is None else f" · accuracy {s.accuracy:.0%}"
            flag = " · :orange[looks at the corners or border]" if s.flagged else ""
            with cells[0]:
                st.image(view.average_map_picture(result.maps[s.members]), width="stretch")
                st.markdown(f"**Cluster {s.index + 1}**: {len(s.members)} "
                            f"image{'s' * (len(s.members) > 1)}{acc} · corners "
                            f"{s.corners:.0%} · border {s.border:.0%}{flag}")
            shown = [int(i) for i in s.members[:view.MEMBERS_SHOWN]]
            for cell, i in zip(cells[1:], shown, strict=False):
                with cell:
                    st.image(thumbnail(i), caption=caption(i), width="stretch", link=image_link(i))
    st.subheader("Embedding of the maps")
    if st.button("Draw the t-SNE embedding", key=f"{P}.embed_button",
                 help=f"scikit-learn's t-SNE of the maps (at most {EMBED_MAX}, a random "
                      "sample beyond), coloured by cluster; select points to see them."):
        st.session_state[f"{P}.embed_for"] = state[0]
    if st.session_state.get(f"{P}.embed_for") == state[0]:
        chosen = np.arange(len(result))
        if len(chosen) > EMBED_MAX:
            chosen = np.sort(np.random.default_rng(0).choice(chosen, EMBED_MAX, replace=False))
        kept_embedding = st.session_state.get(f"{P}.embedding")
        if kept_embedding is None or kept_embedding[0] != state[0]:
            with st.spinner("t-SNE..."):
                kept_embedding = (state[0], embed_maps(result.maps[chosen]))
            st.session_state[f"{P}.embedding"] = kept_embedding
        points = table.iloc[chosen].assign(x=kept_embedding[1][:, 0], y=kept_embedding[1][:, 1],
                                           row=chosen)
        figure = px.scatter(points, x="x", y="y", color="cluster",
                            hover_data={"file": True, "predicted": True, "true": True,
                                        "confidence": ":.2f", "x": False, "y": False},
                            custom_data=["row"], height=480)
        figure.update_layout(margin={"l": 0, "r": 0, "t": 10, "b": 0})
        picked = st.plotly_chart(figure, key=f"{P}.embedding_chart", on_select="rerun",
                                 selection_mode=("points", "box", "lasso"))
        selected = [int(p["customdata"][0]) for p in (picked.selection.points if picked else [])
                    if p.get("customdata")]
        if selected:
            st.caption(f"{len(selected)} selected (the first {min(len(selected), 12)} shown)")
            thumbnails(selected[:12])
        else:
            st.caption("Select points (click, box or lasso) to see their images.")

with gallery_tab:
    f1, f2, f3, f4 = st.columns([2, 2, 2, 2])
    classes = sorted(table["predicted"].unique())
    with f1:
        chosen_predicted = st.multiselect("Predicted class", classes, key=f"{P}.f_predicted")
    with f2:
        true_classes = sorted(t for t in table["true"].dropna().unique())
        chosen_true = st.multiselect("True class", true_classes, key=f"{P}.f_true",
                                     disabled=not true_classes)
    with f3:
        outcome = select("Right or wrong", list(OUTCOMES), f"{P}.f_outcome", "all",
                         format_func=lambda o: OUTCOMES[o])
    with f4:
        cluster_choice = select("Cluster", ["", *[s.name for s in found]], f"{P}.f_cluster", "",
                                format_func=lambda c: c or "any")
    s1, s2 = st.columns([3, 1])
    with s1:
        sorts = [s for s in view.SORTS if s in table.columns]
        by_column = select("Sort by", sorts, f"{P}.sort", "confidence",
                           format_func=lambda s: view.SORTS[s],
                           help=" ".join(view.MEASURE_HELP.values()))
    with s2:
        ensure(f"{P}.descending", by_column != "file")
        descending = st.toggle("Largest first", key=f"{P}.descending")
    rows = view.sorted_rows(view.filtered(table, chosen_predicted, chosen_true, outcome,
                                          cluster_choice), by_column, descending)
    pages_count = max(1, -(-len(rows) // PAGE_SIZE))
    ensure(f"{P}.page", 1)
    if st.session_state[f"{P}.page"] > pages_count:
        st.session_state[f"{P}.page"] = 1
    p1, p2 = st.columns([1, 4], vertical_alignment="bottom")
    with p1:
        number = st.number_input(f"Page (of {pages_count})", 1, pages_count, key=f"{P}.page") \
            if pages_count > 1 else 1
    with p2:
        st.caption(f"{len(rows)} of {len(table)} images · click a picture to open it on the "
                   "Image page with these settings")
    thumbnails([int(i) for i in rows.index[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]])

with table_tab:
    st.dataframe(table, hide_index=True, column_config={
        "confidence": st.column_config.NumberColumn(format="percent"),
        "concentration": st.column_config.NumberColumn(format="%.3f",
                                                       help=view.MEASURE_HELP["concentration"]),
        "corners": st.column_config.NumberColumn(format="percent", help=view.MEASURE_HELP["corners"]),
        "border": st.column_config.NumberColumn(format="percent", help=view.MEASURE_HELP["border"]),
        "top10_mass": st.column_config.NumberColumn(format="percent"),
    })
    stem = f"dataset_{model_name}_{method}"
    parquet = io.BytesIO()
    table.to_parquet(parquet, index=False)
    clusters = view.clusters_table(found, result.names)
    d1, d2, d3, d4 = st.columns(4)
    d1.download_button("Per-image table (CSV)", table.to_csv(index=False), f"{stem}.csv",
                       "text/csv", key=f"{P}.dl_csv", width="stretch")
    d2.download_button("Per-image table (Parquet)", parquet.getvalue(), f"{stem}.parquet",
                       "application/octet-stream", key=f"{P}.dl_parquet", width="stretch")
    d3.download_button("Clusters (JSON)", json.dumps(clusters.to_dict("records"), indent=1),
                       f"{stem}_clusters.json", "application/json", key=f"{P}.dl_clusters_json",
                       width="stretch")
    d4.download_button("Clusters (CSV)", clusters.assign(members=clusters["members"].map(";".join))
                       .to_csv(index=False), f"{stem}_clusters.csv", "text/csv",
                       key=f"{P}.dl_clusters_csv", width="stretch")
