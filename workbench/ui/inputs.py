"""Inputs for the image pages: sample pictures (scikit-image's bundled photographs and generated
shapes with their ground-truth masks) and uploads, each named by a short source string that a
share link can carry: ``photo:<name>``, ``shapes:<i>``, ``shapes-wm:<i>`` or ``upload:<sha256>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import streamlit as st
from PIL import Image

from saliency_core.errors import SaliencyError
from saliency_core.io.images import load_image
from workbench.hosting import uploads
from workbench.hosting.share import ShareLinkError, ShareStore
from workbench.ui.plaintext import visible

# Photographs that ship inside the scikit-image package (no download needed).
PHOTOS = {
    "chelsea": "Chelsea the cat (a tabby)",
    "coffee": "A cup of coffee on a saucer",
    "rocket": "A rocket on the launch pad",
    "astronaut": "Astronaut Eileen Collins in her flight suit",
    "camera": "A man with a camera on a tripod (grayscale)",
}
SHAPES_SEED = 2024
SHAPES_COUNT = 12


@dataclass
class InputImage:
    image: Image.Image  # RGB
    source: str  # what a share link carries
    label: str
    mask: np.ndarray | None = None  # bool [H, W]: where the evidence truly is (shapes only)
    notices: list[str] = field(default_factory=list)

    @property
    def pixels(self) -> np.ndarray:
        return np.asarray(self.image)


def sample_sources() -> list[str]:
    """Photos first (what the default ImageNet model knows), then the generated shapes."""
    shapes = [f"shapes:{i}" for i in range(SHAPES_COUNT)]
    watermarked = [f"shapes-wm:{i}" for i in range(SHAPES_COUNT)]
    return [f"photo:{name}" for name in PHOTOS] + shapes + watermarked


@st.cache_data(show_spinner=False)
def _shapes(spurious: bool):
    from saliency_core.training.shapes import CLASS_NAMES, generate

    data = generate(SHAPES_COUNT, SHAPES_SEED, spurious=spurious)
    return data.images, data.labels, data.masks, list(CLASS_NAMES)


@st.cache_data(show_spinner=False)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    pixels = getattr(skimage.data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :3])


def sample_label(source: str) -> str:
    kind, _, name = source.partition(":")
    if kind == "photo":
        return f"Photo: {PHOTOS.get(name, name)}"
    if kind in ("shapes", "shapes-wm"):
        try:
            _, labels, _, classes = _shapes(kind == "shapes-wm")
            what = classes[labels[int(name)]]
        except (ValueError, IndexError):
            what = "?"
        suffix = " with watermark" if kind == "shapes-wm" else ""
        return f"Shapes #{name}: {what}{suffix}"
    if kind == "upload":
        return f"Uploaded image {name[:10]}"
    return source


def from_sample(source: str) -> InputImage:
    kind, _, name = source.partition(":")
    if kind == "photo" and name in PHOTOS:
        return InputImage(Image.fromarray(_photo(name)), source, sample_label(source))
    # isdigit() alone accepts "²" and other digits int() refuses: ASCII only.
    if kind in ("shapes", "shapes-wm") and name.isascii() and name.isdigit() \
            and int(name) < SHAPES_COUNT:
        images, _labels, masks, _ = _shapes(kind == "shapes-wm")
        i = int(name)
        return InputImage(Image.fromarray(images[i]), source, sample_label(source), masks[i])
    raise ShareLinkError(f"There is no sample called {source!r}.")


def upload_label(file_name: str | None, source: str) -> str:
    """How an upload is named on screen: its file name as the uploader gave it (raw text, for
    the caller to show with plaintext), or, opened from a link without one, its hash."""
    if file_name:
        return f"{visible(file_name, 120)} (uploaded)"
    return sample_label(source)


def from_upload(data: bytes, store: ShareStore, file_name: str | None = None) -> InputImage:
    """Validate an uploaded file, keep it for share links, and return the decoded image."""
    uploads.check_size(data, uploads.image_limit_mb(), "image file")
    image, notices = load_image(data)  # raises a SaliencyError before anything is stored
    digest = store.put(data)
    source = f"upload:{digest}"
    return InputImage(image, source, upload_label(file_name, source), None, notices)


def from_source(source: str, store: ShareStore, file_name: str | None = None) -> InputImage:
    """Rebuild an input from a link's source string; a clear SaliencyError when impossible.
    Links carry only the hash: ``file_name`` is what this session knows the upload as."""
    kind, _, name = source.partition(":")
    if kind == "upload":
        data = store.get(name)
        image, notices = load_image(data)
        return InputImage(image, source, upload_label(file_name, source), None, notices)
    if kind in ("photo", "shapes", "shapes-wm"):
        return from_sample(source)
    raise ShareLinkError(
        f"The link's input {source!r} is not understood (expected photo:..., shapes:... or "
        "upload:...)."
    )


def default_sample(model_name: str | None) -> str:
    if model_name and model_name.startswith("shapes-cnn-watermark"):
        return "shapes-wm:0"
    if model_name and model_name.startswith("shapes-"):
        return "shapes:0"
    return "photo:chelsea"


def domain_notice(loaded, source: str) -> str | None:
    """A sentence when the input is not what the model was trained on, else None.

    The shapes models know six generated shapes on plain backgrounds: on a photo or an upload
    their answer and their map say nothing about the picture. An ImageNet model on a generated
    shape is guessing among photo classes."""
    shapes_input = source.partition(":")[0] in ("shapes", "shapes-wm")
    trained_on_shapes = "generator" in loaded.card.get("data", {})
    if trained_on_shapes and not shapes_input:
        return (f"{loaded.name} only knows procedural shapes ({', '.join(loaded.labels)} on a "
                "plain background): on any other picture its answer and its map explain nothing. "
                "Pick an ImageNet model such as efficientnet-lite0 for photos.")
    if shapes_input and not trained_on_shapes and loaded.card.get("trained_on") == "ImageNet-1k":
        return (f"{loaded.name} was trained on ImageNet photographs, and this generated shape is "
                "none of its 1000 classes: its answer is a guess. The shapes models (with "
                "ground-truth masks) go with these samples.")
    return None


# Below a quarter of the model's side, upsampling spreads each pixel over more than 4 x 4 of
# the model's: what the model sees is blur the picture never held.
TINY_FRACTION = 4
# Two levels out of 255 cover JPEG noise on a flat colour; anything above is a real picture.
UNIFORM_LEVELS = 2


def degenerate_notice(pixels: np.ndarray, model_side: tuple[int, int]) -> str | None:
    """A sentence saying what a map can and cannot mean when the picture holds (almost)
    nothing for the model to see: far smaller than the model's input, or one colour. None for
    an ordinary picture. The page still explains it: the notice keeps the map honest."""
    height, width = pixels.shape[:2]
    side_h, side_w = model_side
    channels = pixels.reshape(-1, pixels.shape[-1] if pixels.ndim == 3 else 1)
    uniform = int(np.ptp(channels, axis=0).max()) <= UNIFORM_LEVELS
    if min(height, width) * TINY_FRACTION < min(side_h, side_w):
        what = "pixel" if height * width == 1 else "pixels"
        seen = (f"This picture is {width} x {height} {what}, and the model sees {side_w} x "
                f"{side_h}: it was blown up {max(side_w / width, side_h / height):.0f} times. ")
        if uniform:
            return seen + ("The prediction is a guess on an upsampled picture of one colour, and "
                           "the map shows the upsampling's interpolation and how the model "
                           "responds to position (padding, its layer grid), not evidence in "
                           "the picture.")
        return seen + ("The prediction is a guess on an upsampled picture, and the map shows "
                       "interpolation between those few pixels, not evidence in the picture.")
    if uniform:
        return ("Every pixel of this picture has (nearly) one colour: there is nothing in it to "
                "point at. The prediction is the model's guess on a blank picture, and the map "
                "shows how the model responds to position (padding, its layer grid), not "
                "evidence in the picture.")
    return None


def try_source(source: str, store: ShareStore,
               file_name: str | None = None) -> tuple[InputImage | None, str | None]:
    try:
        return from_source(source, store, file_name), None
    except SaliencyError as exc:
        return None, str(exc)


UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]


def restore_input(reader, prefix: str, store: ShareStore, default: str) -> None:
    """Apply a link's ``input=`` to the picker's state; a bad one becomes a problem + default."""
    source = reader.text("input", default, max_chars=200)
    found, problem = try_source(source, store)
    if found is None:
        reader.problems.append(f"{problem} Showing a sample instead.")
        source = default
    is_upload = source.startswith("upload:")
    st.session_state[f"{prefix}.mode"] = "Upload" if is_upload else "Sample"
    st.session_state[f"{prefix}.upload_source"] = source if is_upload else None
    if not is_upload:
        st.session_state[f"{prefix}.sample"] = source


def input_picker(prefix: str, store: ShareStore, default: str) -> tuple[InputImage | None, str | None]:
    """Sidebar widgets choosing a sample or an upload; returns (input or None, error or None).

    An upload is decoded and checked before it is stored, so a bad file is only a message.
    Without a new upload, the last one (or the one a link names) stays in use.
    """
    from workbench.ui.widgets import ensure, select

    ensure(f"{prefix}.mode", "Sample")
    mode = st.radio("Source", ["Sample", "Upload"], key=f"{prefix}.mode", horizontal=True)
    if mode == "Sample":
        sample = select("Sample", sample_sources(), f"{prefix}.sample", default,
                        format_func=sample_label)
        return try_source(sample, store)
    # Images have their own limit, well below the weights' (the server's cap).
    uploaded = st.file_uploader("Image file (PNG, JPEG, WebP, BMP, TIFF)", type=UPLOAD_TYPES,
                                key=f"{prefix}.file", max_upload_size=uploads.image_limit_mb())
    if uploaded is not None:
        st.session_state[f"{prefix}.had_file"] = True
        try:
            current = from_upload(uploaded.getvalue(), store, uploaded.name)
        except SaliencyError as exc:
            return None, f"{visible(uploaded.name, 120)}: {exc}"
        st.session_state[f"{prefix}.upload_source"] = current.source
        # The name stays in this session only: a link names the upload by its hash.
        st.session_state[f"{prefix}.upload_name"] = (current.source, uploaded.name)
        return current, None
    if st.session_state.pop(f"{prefix}.had_file", False):
        # The user removed the file: forget it rather than keep showing it.
        st.session_state[f"{prefix}.upload_source"] = None
    previous = st.session_state.get(f"{prefix}.upload_source")
    if previous:
        named_source, file_name = st.session_state.get(f"{prefix}.upload_name", (None, None))
        return try_source(previous, store, file_name if named_source == previous else None)
    return None, None
