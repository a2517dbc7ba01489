"""Property-based tests (Hypothesis): whatever bytes or strings arrive, the input paths give
a result or a SaliencyError, never another exception.

``make test`` runs a small number of examples per target (profile "quick"); ``make fuzz``
runs 10,000 per target (``--hypothesis-profile=fuzz``; both profiles are in conftest.py).
"""

from __future__ import annotations

import io
import struct

from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

import saliency_core
from saliency_core.errors import SaliencyError
from saliency_core.io.images import load_image
from saliency_core.models.byo import _read_safetensors
from workbench.hosting.share import ShareStore, is_digest
from workbench.ui.urlstate import UrlReader


def _png(w=8, h=6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


SEEDS = [_png()]
for fmt in ("JPEG", "WEBP", "BMP", "TIFF", "GIF"):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 20, 30)).save(buffer, fmt)
    SEEDS.append(buffer.getvalue())


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


# A TIFF whose second directory has no width: Pillow's n_frames raised TypeError (make fuzz).
TIFF_WITHOUT_WIDTH = (bytes.fromhex("4949002a080000000900000104000100000000000001010103000100000001") + bytes(39)
                      + bytes.fromhex("1101010001") + bytes(46) + b"\x01")


@given(st.one_of(st.binary(max_size=512), mutated_images()))
@example(TIFF_WITHOUT_WIDTH)
def test_image_loading_gives_an_image_or_a_saliency_error(data):
    try:
        image, notices = load_image(data, max_pixels=4096)
    except SaliencyError:
        return
    assert image.mode == "RGB" and image.size[0] * image.size[1] <= 4096
    assert all(isinstance(n, str) for n in notices)


TEXT = st.text(max_size=80)
PARAMS = st.dictionaries(st.sampled_from(["steps", "alpha", "model", "flag", "text", "p.x", ""])
                         | TEXT, TEXT | st.lists(TEXT, max_size=3), max_size=6)


@given(PARAMS, st.floats(allow_nan=True) | st.integers() | st.none(),
       st.floats(allow_nan=False) | st.none())
def test_url_state_parser_never_raises(params, lo, hi):
    reader = UrlReader(params)
    for key in list(reader.params) + ["steps", "missing"]:
        reader.number(key, 1, lo if isinstance(lo, (int, float)) else None, hi)
        reader.number(key, 1, 0, 100, integer=True)
        reader.choice(key, ["a", "b", 3], "a")
        reader.flag(key, False)
        reader.text(key, "", max_chars=20)
    assert all(isinstance(p, str) for p in reader.problems)


@given(st.text(max_size=100) | st.sampled_from(["../" * 5 + "etc/passwd", "0" * 64, "a" * 64]))
def test_share_store_keys_are_hashes_or_refused(tmp_path_factory, key):
    store = ShareStore(root=tmp_path_factory.getbasetemp() / "share", limit_bytes=1 << 20)
    try:
        name = store.key(key)
    except SaliencyError:
        assert not is_digest(key)
        return
    assert is_digest(key) and name == f"{key}.bin" and "/" not in name
    try:
        store.get(key)
    except SaliencyError:
        pass


@st.composite
def safetensors_like(draw) -> bytes:
    header = draw(st.binary(max_size=200) | st.text(max_size=200).map(str.encode)
                  | st.sampled_from([b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                                     b'{"w":{"dtype":"I8","shape":[99999999],"data_offsets":[0,9]}}',
                                     b'{"__metadata__":{"a":"b"}}', b"{}"]))
    length = draw(st.integers(0, 2**64 - 1) | st.just(len(header)))
    return struct.pack("<Q", length) + header + draw(st.binary(max_size=64))


@given(st.binary(max_size=300) | safetensors_like())
def test_safetensors_reader_gives_tensors_or_a_saliency_error(data):
    try:
        state = _read_safetensors(data)
    except SaliencyError:
        return
    assert state and all(hasattr(t, "shape") for t in state.values())


VALUES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
          | st.lists(st.integers(), max_size=3) | st.integers(min_value=10**300, max_value=10**400))
SPEC_PARAMS = [(spec.name, p) for spec in saliency_core.methods() for p in spec.params]


@given(st.sampled_from(SPEC_PARAMS), VALUES, st.sampled_from(["image", "text"]))
def test_every_method_parameter_validates_or_refuses(named, value, kind):
    _method, param = named
    try:
        param.validate(value, kind)
    except SaliencyError:
        pass
