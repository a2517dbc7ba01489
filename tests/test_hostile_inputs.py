"""Large inputs are bounded: PNGs past what is safe to decode whole are refused before
decoding, big images shrink right after decoding, a 100k-character paste is cut with a
message."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support.apptest import run_app_page
from support.browser import REPO_ROOT

from saliency_core.io.images import FULL_DECODE_PIXELS, ImageTooLargeError, load_image


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def test_a_png_past_the_whole_decode_limit_is_refused_before_decoding():
    side = int(FULL_DECODE_PIXELS ** 0.5) + 8
    data = png_bytes(Image.new("L", (side, side), 200), optimize=True)
    assert len(data) < 1_000_000  # small file, huge declared size
    with pytest.raises(ImageTooLargeError, match="24 megapixels"):
        load_image(data)


def test_a_large_16_bit_image_is_reduced_before_conversion():
    ramp = (np.arange(3000 * 2000, dtype=np.uint32).reshape(2000, 3000) % 65536).astype(np.uint16)
    image, notices = load_image(png_bytes(Image.fromarray(ramp)))
    assert image.mode == "RGB" and image.size[0] * image.size[1] <= 2_000_000
    assert any("16-bit" in n for n in notices) and any("scaled down" in n for n in notices)


def test_a_large_rotated_jpeg_keeps_its_orientation_when_reduced():
    wide = Image.new("RGB", (4000, 1000), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", exif=exif)
    image, _ = load_image(buffer.getvalue())
    assert image.size[1] > image.size[0]


def test_a_100k_character_paste_is_cut_with_a_message():
    at = run_app_page(str(REPO_ROOT / "pages" / "text.py"), {"method": "gradient"})
    at.text_area(key="text.text").set_value("a fine film. " * 8_000).run()
    assert not at.exception
    assert any("only the first 5,000 are used" in w.value for w in at.warning)
    assert any("longer than" in w.value and "tokens" in w.value for w in at.warning)


def test_extreme_aspect_ratios_stay_within_the_pixel_bound():
    # Found by `make fuzz`: a 1 x 4112 image scaled for 4096 pixels came out 1 x 4103.
    from saliency_core.io.images import _scaled_size

    for size in ((1, 4112), (4112, 1), (2, 99_999), (3000, 2000)):
        width, height = _scaled_size(size, 4096)
        assert width * height <= 4096 and width >= 1 and height >= 1


def test_a_float_parameter_given_a_huge_integer_is_refused():
    # Found by `make fuzz`: float(10**400) raised OverflowError instead of a ParameterError.
    import saliency_core
    from saliency_core.errors import SaliencyError

    sigma = saliency_core.get_method("smoothgrad").param("sigma")
    with pytest.raises(SaliencyError, match="must be a number"):
        sigma.validate(10**400, "image")
