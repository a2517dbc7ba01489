"""The Image page under Streamlit's AppTest: default view, every method, display options that
never rerun the model, uploads good and bad, share-link restore, stop, exports."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from support.apptest import count_engine_runs, run_app_page, share_link, shown
from support.browser import REPO_ROOT

import saliency_core
from workbench.jobs import compute
from workbench.ui import display

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

PAGE = str(REPO_ROOT / "pages" / "image.py")
TIMEOUT = 180


@pytest.fixture
def engine_calls(monkeypatch, tmp_path):
    """Counts real model runs (saliency_core.explain) and starts from an empty result cache;
    uploads go to a temporary share store."""
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "share"))
    compute.result_cache.clear()
    calls: list[str] = []
    with count_engine_runs(lambda _model, method: calls.append(method)):
        yield calls
    compute.result_cache.clear()


# Most tests exercise the page's machinery, which is the same for every model: on the bundled
# shapes CNN it costs a fraction of the default ImageNet model's time on 2 shared cores.
SHAPES = {"model": "shapes-cnn"}
CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def run_page(query: dict | None = None) -> AppTest:
    return run_app_page(PAGE, {**SHAPES, **(query or {})}, TIMEOUT)


def image_urls(at: AppTest) -> list[str]:
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def image_captions(at: AppTest) -> list[str]:
    return [shown(img.caption) for element in at.get("image") for img in element.proto.imgs]


def heatmap_spec(at: AppTest) -> dict:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)


def run_details(at: AppTest) -> dict:
    value = at.json[0].value
    return json.loads(value) if isinstance(value, str) else value


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_default_view_explains_a_photo_with_a_real_imagenet_model(engine_calls):
    at = run_app_page(PAGE, None, TIMEOUT)
    assert at.query_params["model"] == "efficientnet-lite0"
    assert at.query_params["input"] == "photo:chelsea"
    # Grad-CAM is the first view (issue 26): one pass, and nothing to warn about.
    assert at.query_params["method"] == "gradcam"
    assert engine_calls == ["gradcam"]
    assert not at.warning and not at.error
    assert set(at.dataframe[0].value["class"][:3]) <= CATS
    assert at.metric[0].value in CATS


def test_a_photo_upload_is_explained_by_the_default_model(engine_calls):
    import skimage.data

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="JPEG", quality=90)
    at = run_app_page(PAGE, {"method": "gradcam"}, TIMEOUT)
    at.radio(key="image.mode").set_value("Upload").run()
    at.file_uploader(key="image.file").upload("cat.jpg", buffer.getvalue(), "image/jpeg").run()
    assert not at.exception and not at.error and not at.warning
    assert at.query_params["model"] == "efficientnet-lite0"
    assert at.query_params["input"].startswith("upload:")
    assert at.metric[0].value in CATS


def test_a_shapes_model_on_a_photo_says_it_only_knows_shapes(engine_calls):
    at = run_page({"input": "photo:coffee", "method": "gradient"})
    assert any("only knows procedural shapes" in w.value for w in at.warning)
    at = run_app_page(PAGE, {"input": "shapes:2", "method": "gradient"}, TIMEOUT)
    assert any("trained on ImageNet photographs" in w.value for w in at.warning)


def test_shapes_view_shows_prediction_three_panels_and_link(engine_calls):
    at = run_page({"method": "integrated_gradients"})
    # Gauss-Legendre nodes do not nest: a 7-step preview, then the 50 steps asked for.
    assert engine_calls == ["integrated_gradients"] * 2
    assert run_details(at)["passes"] == 50
    assert len(image_urls(at)) == 2 and len(at.get("plotly_chart")) == 1  # input | heat | overlay
    table = at.dataframe[0].value
    assert list(table.columns) == ["class", "index", "probability"] and len(table) == 5
    assert table["probability"].is_monotonic_decreasing
    assert any("Completeness" in s.value for s in [*at.success, *at.info, *at.warning])
    assert {b.label for b in at.get("download_button")} == {
        "Overlay (PNG)", "Raw attribution (.npz)", "Record (JSON)"}
    assert at.query_params["model"] == "shapes-cnn"
    assert at.query_params["method"] == "integrated_gradients"
    link = share_link(at)
    assert "input=shapes%3A0" in link and "p.steps=50" in link


def test_display_options_rerender_without_running_the_model(engine_calls):
    at = run_page()
    n = len(engine_calls)
    before_images, before_spec = image_urls(at), heatmap_spec(at)

    at.selectbox(key="image.view.cmap").set_value("viridis").run()
    at.slider(key="image.view.alpha").set_value(0.8).run()
    at.slider(key="image.view.clip").set_value(90.0).run()
    at.selectbox(key="image.view.sign").set_value("signed").run()
    assert not at.exception
    assert len(engine_calls) == n, "a display-only change ran the model again"

    after_spec = heatmap_spec(at)
    assert image_urls(at)[1] != before_images[1]  # the overlay changed
    heat, heat_before = display.heat_trace(after_spec), display.heat_trace(before_spec)
    assert heat["colorscale"] != heat_before["colorscale"]
    assert heat["zmin"] == -1.0  # signed maps use [-1, 1]
    assert at.selectbox(key="image.view.cmap").value == "RdBu_r"  # diverging for signed
    assert at.query_params["sign"] == "signed" and at.query_params["clip"] == "90"


def test_method_parameters_rerun_the_model_and_results_are_cached(engine_calls):
    at = run_page({"method": "integrated_gradients"})
    n = len(engine_calls)
    at.slider(key="image.m.integrated_gradients.steps").set_value(16).run()
    assert len(engine_calls) > n and set(engine_calls) == {"integrated_gradients"}
    assert run_details(at)["passes"] == 16
    n = len(engine_calls)
    at.slider(key="image.m.integrated_gradients.steps").set_value(50).run()
    assert len(engine_calls) == n, "going back to earlier settings should come from the cache"


# The bundled CNN is offered every method but the attention ones (they need a transformer;
# tests/test_app_image_hf.py runs those on a vision transformer).
CNN_METHODS = [s.name for s in saliency_core.methods() if not s.name.startswith("attention_")]


@pytest.mark.parametrize("method", CNN_METHODS)
def test_every_method_renders_on_the_bundled_model(engine_calls, method):
    at = run_page({"method": method, "p.samples": "4"} if method == "smoothgrad"
                  else {"method": method})
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="image.method").value == method
    assert len(image_urls(at)) == 2 and len(at.get("plotly_chart")) == 1
    assert engine_calls and set(engine_calls) == {method}


def test_cam_layer_choice_comes_from_the_model(engine_calls):
    at = run_page({"method": "gradcam"})
    layer_box = at.selectbox(key="image.m.gradcam.layer")
    loaded = saliency_core.load_model("shapes-cnn", "cpu")
    assert layer_box.value == "" and layer_box.options[0] == f"default ({loaded.default_layer})"
    assert run_details(at)["layer"] == loaded.default_layer
    paths = [p for p, _ in loaded.candidate_layers()]
    assert len(layer_box.options) == len(paths) + 1
    layer_box.set_value(paths[-1]).run()
    assert not at.exception and not at.error
    assert at.query_params["p.layer"] == paths[-1]
    assert run_details(at)["layer"] == paths[-1]


def test_smoothgrad_base_method_brings_its_own_settings(engine_calls):
    at = run_page({"method": "smoothgrad", "p.samples": "3", "p.base": "integrated_gradients",
                   "b.steps": "8"})
    assert at.selectbox(key="image.m.smoothgrad.base").value == "integrated_gradients"
    assert at.slider(key="image.m.smoothgrad.base.integrated_gradients.steps").value == 8
    assert run_details(at)["passes"] == 3 * 8


def test_target_class_can_be_any_class(engine_calls):
    at = run_page()
    at.selectbox(key="image.target").set_value(5).run()
    assert not at.error
    assert at.metric[0].value == "ring"
    assert at.query_params["target"] == "5"


def test_share_link_settings_restore_the_view(engine_calls):
    at = run_page({"model": "shapes-cnn-watermark", "input": "shapes-wm:3", "method": "gradcam",
                   "target": "2", "cmap": "magma", "alpha": "0.3", "clip": "97.5"})
    assert not at.warning
    assert at.selectbox(key="image.model").value == "shapes-cnn-watermark"
    assert at.selectbox(key="image.sample").value == "shapes-wm:3"
    assert at.selectbox(key="image.target").value == 2
    assert at.selectbox(key="image.view.cmap").value == "magma"
    assert at.slider(key="image.view.alpha").value == pytest.approx(0.3)
    assert at.slider(key="image.view.clip").value == pytest.approx(97.5)


@pytest.mark.slow
def test_malformed_link_gives_messages_and_sane_defaults(engine_calls):
    at = run_page({"model": "no-such-model", "method": "magic", "p.steps": "lots",
                   "alpha": "7", "target": "9999", "input": "upload:" + "0" * 64})
    texts = " ".join(shown(w.value) for w in at.warning)
    for fragment in ("model='no-such-model'", "method='magic'", "alpha='7'", "target='9999'",
                     "does not have"):
        assert fragment in texts, fragment
    assert at.selectbox(key="image.model").value == "efficientnet-lite0"
    assert at.selectbox(key="image.method").value == "gradcam"
    assert at.radio(key="image.mode").value == "Sample"
    assert len(image_urls(at)) == 2  # the page still works


def test_path_like_upload_reference_is_refused(engine_calls):
    at = run_page({"input": "upload:../../etc/passwd"})
    assert any("malformed" in w.value for w in at.warning)
    assert len(image_urls(at)) == 2


def test_upload_renders_and_is_shared_by_hash(engine_calls, tmp_path):
    rng = np.random.default_rng(0)
    picture = png_bytes(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    at = run_page()
    at.radio(key="image.mode").set_value("Upload").run()
    assert any("Upload an image" in i.value for i in at.info)
    at.file_uploader(key="image.file").upload("my *noise*.png", picture, "image/png").run()
    assert not at.exception and not at.error
    source = at.query_params["input"]
    assert source.startswith("upload:")
    digest = source.split(":", 1)[1]
    assert (tmp_path / "share" / f"{digest}.bin").read_bytes() == picture
    # Captioned by its file name, as typed (no Markdown), while the link names the hash.
    assert "Input as the model sees it · my *noise*.png (uploaded)" in image_captions(at)
    assert "noise" not in share_link(at)
    at.slider(key="image.view.alpha").set_value(0.8).run()  # a rerun keeps the name
    assert "Input as the model sees it · my *noise*.png (uploaded)" in image_captions(at)

    # Removing the file goes back to asking for one.
    at.file_uploader(key="image.file").set_value(None).run()
    assert any("Upload an image" in i.value for i in at.info) and not image_urls(at)

    # A colleague's fresh session with the same link sees the same upload.
    again = run_page({"input": source})
    assert again.radio(key="image.mode").value == "Upload"
    assert [w.value for w in again.warning if "only knows procedural shapes" not in w.value] == []
    assert len(image_urls(again)) == 2
    assert f"Input as the model sees it · Uploaded image {digest[:10]}" in image_captions(again)


def bomb_png() -> bytes:
    """A valid PNG header claiming 50000 x 50000 pixels over a few hundred bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 512)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.png", b"this is plain text, not a picture", "not an image"),
        ("cut.png", png_bytes(np.zeros((64, 64, 3), np.uint8) + 90)[:80], "damaged"),
        ("empty.png", b"", "empty"),
        ("bomb.png", bomb_png(), "too many pixels"),
    ],
)
def test_bad_uploads_show_a_message_not_a_traceback(engine_calls, tmp_path, name, data, message):
    at = run_page()
    at.radio(key="image.mode").set_value("Upload").run()
    at.file_uploader(key="image.file").upload(name, data, "image/png").run()
    assert not at.exception
    errors = " ".join(shown(e.value) for e in at.error)
    assert name in errors and message in errors
    assert not (tmp_path / "share").exists() or not list((tmp_path / "share").iterdir())


def test_huge_upload_is_downscaled_with_a_notice(engine_calls):
    big = np.zeros((1500, 1600, 3), np.uint8)
    big[:, 800:] = 200  # compresses well, still 2.4 megapixels
    at = run_page()
    at.radio(key="image.mode").set_value("Upload").run()
    at.file_uploader(key="image.file").upload("big.png", png_bytes(big), "image/png").run()
    assert not at.exception and not at.error
    assert any("1600 x 1500" in i.value and "scaled down" in i.value for i in at.info)
    assert len(image_urls(at)) == 2


def test_stopped_computation_is_not_restarted_until_asked(engine_calls):
    from saliency_core.methods import get as method_entry
    from workbench.ui.inputs import from_sample
    from workbench.ui.progress import STOPPED_KEY

    digest = compute.pixels_digest(from_sample("shapes:0").pixels)
    params = method_entry("integrated_gradients").spec.defaults()
    key = compute.image_computation(saliency_core.load_model("shapes-cnn", "cpu"), "cpu", digest,
                                    "integrated_gradients", params, "predicted").key
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.query_params["model"] = "shapes-cnn"
    at.query_params["method"] = "integrated_gradients"
    at.session_state[STOPPED_KEY] = key
    at.run()
    assert not at.exception
    assert any("Stopped" in w.value for w in at.warning)
    assert engine_calls == [] and not at.get("plotly_chart")
    at.button(key="image.rerun").click().run()
    assert set(engine_calls) == {"integrated_gradients"}
    assert len(at.get("plotly_chart")) == 1


@pytest.fixture
def downloads(monkeypatch):
    """Bytes behind every media URL the page produced (download buttons, images), by file id."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        file_id = real(self, path_or_data, mimetype, kind, filename)
        stored[file_id] = path_or_data if isinstance(path_or_data, bytes) else b""
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return stored


def download(at: AppTest, stored: dict, label: str) -> bytes:
    button = next(b for b in at.get("download_button") if b.label == label)
    file_id = button.proto.url.rsplit("/", 1)[-1].split(".")[0]
    return stored[file_id]


def test_exports_hold_the_raw_attribution_and_a_full_record(engine_calls, downloads):
    at = run_page({"method": "integrated_gradients", "p.steps": "12", "p.baseline": "blur",
                   "target": "3"})
    record = json.loads(download(at, downloads, "Record (JSON)"))
    assert record["model"] == "shapes-cnn" and record["method"] == "integrated_gradients"
    assert record["params"]["steps"] == 12 and record["params"]["baseline"] == "blur"
    assert record["seed"] == 0 and record["target"] == 3 and record["target_label"] == "cross"
    assert record["input"] == "shapes:0" and len(record["input_sha256"]) == 64
    meta = record["metadata"]
    assert meta["time_s"] > 0 and meta["passes"] == 12
    assert {"f_x", "f_baseline", "sum_attribution", "completeness_delta"} <= set(meta)

    raw = np.load(io.BytesIO(download(at, downloads, "Raw attribution (.npz)")))
    assert raw["attribution"].shape == (3, 64, 64) and raw["map"].shape == (64, 64)
    assert int(raw["target"]) == 3 and raw["probabilities"].shape == (6,)
    # The stored attribution is the raw one: it adds up like the record says.
    assert raw["attribution"].sum() == pytest.approx(meta["sum_attribution"][0], rel=1e-4)

    overlay = Image.open(io.BytesIO(download(at, downloads, "Overlay (PNG)")))
    assert overlay.format == "PNG" and overlay.size[0] >= 256


@pytest.mark.slow
def test_what_display_changes_keep_is_what_a_fresh_view_draws(engine_calls, downloads):
    """The heatmap figure and the raw export are kept while a display change leaves them as
    they were; after every change they are exactly what a page opened on the view's link
    draws, so nothing kept is ever stale."""
    at = run_page({"method": "gradient"})
    changes = [("slider", "image.view.alpha", 0.8), ("selectbox", "image.view.cmap", "viridis"),
               ("slider", "image.view.alpha", 0.3), ("slider", "image.view.clip", 90.0),
               ("selectbox", "image.view.agg", "l2"), ("selectbox", "image.view.sign", "signed")]
    for kind, key, value in changes:
        getattr(at, kind)(key=key).set_value(value).run()
        assert not at.exception
        fresh = run_page({name: at.query_params[name] for name in at.query_params})
        assert heatmap_spec(at) == heatmap_spec(fresh), key
        assert image_urls(at) == image_urls(fresh), key
        kept, new = (np.load(io.BytesIO(download(a, downloads, "Raw attribution (.npz)")))
                     for a in (at, fresh))
        assert set(kept.files) == set(new.files)
        assert all(np.array_equal(kept[name], new[name]) for name in new.files), key
