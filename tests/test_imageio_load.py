"""imageio.load_image on files made in the test: every supported format, conversions to 8-bit RGB,
EXIF orientation, downscaling, and clear errors for files that are not (whole) images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from saliency_core.errors import SaliencyError
from saliency_core.io.images import ImageReadError, ImageTooLargeError, load_image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _gradient_rgb(width=40, height=30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 128)], axis=2))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
def test_every_supported_format_loads_as_rgb(fmt):
    source = _gradient_rgb()
    image, notices = load_image(_encode(source, fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    assert notices == []
    diff = np.abs(np.asarray(image, np.int16) - np.asarray(source, np.int16))
    assert diff.mean() < 6  # lossy formats are close, lossless exact
    if fmt in ("PNG", "BMP", "TIFF"):
        assert diff.max() == 0


def test_rgba_is_composited_on_white_with_notice():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    image, notices = load_image(_encode(Image.fromarray(rgba), "PNG"))
    pixels = np.asarray(image)
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[3, 0].tolist() == [255, 255, 255]
    assert any("transparent" in n for n in notices)


def test_grayscale_and_palette_become_rgb():
    gray = Image.fromarray(np.array([[0, 128], [200, 255]], np.uint8))
    image, _ = load_image(_encode(gray, "PNG"))
    assert image.mode == "RGB" and np.asarray(image)[1, 0].tolist() == [200, 200, 200]
    palette = _gradient_rgb().quantize(8)
    assert palette.mode == "P"
    image, _ = load_image(_encode(palette, "PNG"))
    np.testing.assert_array_equal(np.asarray(image), np.asarray(palette.convert("RGB")))


def test_palette_with_transparency_index_is_flattened():
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    image, notices = load_image(_encode(palette, "PNG", transparency=0))
    assert np.asarray(image)[0].tolist() == [[255, 255, 255], [0, 255, 0]]
    assert notices


def test_16_bit_png_is_scaled_to_8_bit():
    values = np.array([[0, 65535], [32896, 257 * 10]], dtype=np.uint16)
    source = Image.fromarray(values)
    data = _encode(source, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image, notices = load_image(data)
    assert image.mode == "RGB"
    assert np.asarray(image)[..., 0].tolist() == [[0, 255], [128, 10]]
    assert any("16-bit" in n for n in notices)


def test_exif_orientation_is_honoured():
    # A 40x20 landscape whose EXIF says "rotate 90° clockwise to view" (orientation 6).
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = [255, 0, 0]  # left half red, right half blue
    pixels[:, 20:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)
    image, _ = load_image(data)
    assert image.size == (20, 40)  # portrait once upright
    upright = np.asarray(image).astype(int)
    # Rotating 90° clockwise puts the stored left (red) half at the top.
    assert upright[2, 10, 0] > 200 and upright[2, 10, 2] < 60
    assert upright[37, 10, 2] > 200 and upright[37, 10, 0] < 60


def test_huge_image_is_downscaled_with_notice():
    source = _gradient_rgb(400, 300)
    image, notices = load_image(_encode(source, "PNG"), max_pixels=10_000)
    w, h = image.size
    assert w * h <= 10_000 and abs(w / h - 4 / 3) < 0.05
    assert any("400 x 300" in n and "scaled down" in n for n in notices)


def test_large_jpeg_is_downscaled_too():
    image, notices = load_image(_encode(_gradient_rgb(640, 480), "JPEG"), max_pixels=20_000)
    assert image.size[0] * image.size[1] <= 20_000 and notices


def test_truncated_png_gives_clear_error():
    data = _encode(_gradient_rgb(64, 64), "PNG")
    with pytest.raises(ImageReadError, match="damaged|cut short"):
        load_image(data[: len(data) // 2])


def test_text_file_gives_clear_error():
    with pytest.raises(ImageReadError, match="not an image") as info:
        load_image(b"hello, this is not a picture\n" * 10)
    assert isinstance(info.value, SaliencyError)


def test_empty_file_gives_clear_error():
    with pytest.raises(ImageReadError, match="empty"):
        load_image(b"")


def test_gif_is_refused_as_unsupported_format():
    with pytest.raises(ImageReadError, match="PNG, JPEG"):
        load_image(_encode(_gradient_rgb(), "GIF"))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF
    )


def test_decompression_bomb_header_is_refused_before_decoding():
    # A valid PNG header that claims 100000 x 100000 pixels, with a tiny compressed body:
    # decoding would allocate 30 GB.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
            + _png_chunk(b"IEND", b""))
    assert len(data) < 2_000
    with pytest.raises(ImageTooLargeError, match="too many pixels|refused"):
        load_image(data)


def test_bomb_limit_is_configurable():
    data = _encode(_gradient_rgb(100, 100), "PNG")
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        load_image(data, bomb_pixels=5_000)


def test_non_bytes_input_is_an_error():
    with pytest.raises(ImageReadError):
        load_image("a path, not bytes")  # type: ignore[arg-type]
