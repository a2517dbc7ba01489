"""Reading images that users upload: any of the common formats in, a plain 8-bit RGB picture out,
or a message that says what is wrong with the file.

Uploads are untrusted. The header is checked before any pixel is decoded, so a small file that
claims billions of pixels (a decompression bomb) is refused without allocating them; a file that
is not an image, or is cut short, gets a SaliencyError instead of a traceback. Large photographs
are reduced (JPEGs already while decoding) so that the app never holds a huge array.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from saliency_core.errors import SaliencyError

# Camera JPEGs with a preview frame (MPO) come through Pillow's JPEG opener as well.
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
FORMAT_NAMES = "PNG, JPEG, WebP, BMP or TIFF"
# Above this many pixels a file is refused outright: decoding would need gigabytes. JPEGs
# are decoded at 1/2, 1/4 or 1/8 scale (draft), so they may declare more than other formats,
# which Pillow can only decode whole: 24 megapixels (a 6000 x 4000 photograph) is 72 MB of RGB.
BOMB_PIXELS = 64_000_000
FULL_DECODE_PIXELS = 24_000_000
# Above this many pixels an image is scaled down (aspect kept) and the user told so.
MAX_PIXELS = 2_000_000


# What Pillow's format plugins raise on malformed data. Beyond the I/O errors, a TIFF whose
# second directory lacks its width raises TypeError from n_frames (found by `make fuzz`), and
# other plugins let KeyError, IndexError or struct.error out of their header parsers.
_DAMAGED = (OSError, ValueError, SyntaxError, EOFError, TypeError, KeyError, IndexError,
            struct.error, ZeroDivisionError, OverflowError)


class ImageReadError(SaliencyError):
    """The uploaded file is not an image we can read (wrong type, corrupt or cut short)."""


class ImageTooLargeError(ImageReadError):
    """The image declares more pixels than it is safe to decode."""


def _open(data: bytes) -> Image.Image:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageReadError("expected the file's bytes")
    if len(data) == 0:
        raise ImageReadError("The file is empty.")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; treat it as refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(bytes(data)), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(
            f"This image declares too many pixels to open safely ({exc})."
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(
            f"This file is not an image we can read; upload a {FORMAT_NAMES} file."
        ) from None
    except _DAMAGED as exc:
        raise ImageReadError(f"This image file is damaged and cannot be read ({exc}).") from None


def _frame_count(image: Image.Image) -> int:
    """Frames in the file; counting reads every frame's header, which may be damaged."""
    try:
        return int(getattr(image, "n_frames", 1))
    except _DAMAGED as exc:
        raise ImageReadError(f"This image file is damaged and cannot be read ({exc}).") from None


def _check_declared_size(image: Image.Image, bomb_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageReadError(f"This image has no pixels ({width} x {height}).")
    if width * height > bomb_pixels:
        raise ImageTooLargeError(
            f"This image is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"images above {bomb_pixels / 1e6:.0f} megapixels are refused. Scale it down first."
        )


def _scaled_size(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    width, height = size
    if width * height <= max_pixels:
        return size
    factor = (max_pixels / (width * height)) ** 0.5
    width, height = max(1, int(width * factor)), max(1, int(height * factor))
    # A side rounded up to one pixel leaves the other too long (1 x 4112 for 4096): trim it.
    if width * height > max_pixels:
        if width >= height:
            width = max(1, max_pixels // height)
        else:
            height = max(1, max_pixels // width)
    return width, height


def _to_uint8(array: np.ndarray, bits_hint: int | None) -> np.ndarray:
    """Rescale integer/float samples of any depth to 0..255."""
    a = array.astype(np.float64)
    if np.issubdtype(array.dtype, np.floating):
        finite = a[np.isfinite(a)]
        top = float(finite.max()) if finite.size else 1.0
        bottom = float(finite.min()) if finite.size else 0.0
        if bottom >= 0 and top <= 1.0:
            a = a * 255.0
        elif top > bottom:
            a = (a - bottom) / (top - bottom) * 255.0
        a = np.nan_to_num(a)
    else:
        full = float(2 ** bits_hint - 1) if bits_hint else float(max(255, a.max()))
        if bits_hint is None and a.max() <= 255:
            full = 255.0
        elif bits_hint is None and a.max() <= 65535:
            full = 65535.0
        a = a * (255.0 / full)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _to_rgb(image: Image.Image, notices: list[str]) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        bits = 16 if mode.startswith("I;16") else None
        gray = _to_uint8(np.asarray(image), bits)
        depth = "16-bit" if mode.startswith("I;16") or (mode == "I" and np.asarray(image).max() > 255) else (
            "32-bit float" if mode == "F" else "32-bit")
        notices.append(f"Converted a {depth} grayscale image to 8-bit RGB.")
        return Image.fromarray(gray).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            # Models were trained on opaque photographs; white is what viewers show behind
            # transparent areas, so the model sees what the user saw.
            notices.append("The image has transparent areas; they were placed on white.")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        notices.append("Converted a CMYK image to RGB.")
    return image.convert("RGB")


def _reduced(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Shrink by a whole factor right after decoding (cheap box filter), so that every
    conversion after it (bit depth, transparency, rotation) works on the small image."""
    factor = min(image.size[0] // max(1, target[0]), image.size[1] // max(1, target[1]))
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except (ValueError, NotImplementedError):  # modes reduce() does not support (I;16, P)
        return image


def load_image(data: bytes, max_pixels: int = MAX_PIXELS,
               bomb_pixels: int = BOMB_PIXELS) -> tuple[Image.Image, list[str]]:
    """Decode an uploaded file into an upright 8-bit RGB image of at most ``max_pixels``.

    Returns (image, notices): the notices say what was changed (downscaled, transparency
    flattened, bit depth reduced, first frame of an animation taken). Raises ImageReadError
    (a SaliencyError) for anything that is not a readable image, ImageTooLargeError for
    images above ``bomb_pixels``.
    """
    notices: list[str] = []
    image = _open(data)
    drafts = image.format in ("JPEG", "MPO")
    _check_declared_size(image, bomb_pixels if drafts else min(bomb_pixels, FULL_DECODE_PIXELS))
    frames = _frame_count(image)
    if frames > 1 and image.format != "MPO":
        notices.append(f"The file holds {frames} frames; the first one is used.")
    original = image.size
    target = _scaled_size(original, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if image.format in ("JPEG", "MPO") and target != original:
                # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: a fraction of the memory.
                image.draft("RGB", target)
            image.load()
            image = _reduced(image, target)
            image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"This image has too many pixels to open safely ({exc}).") from None
    except _DAMAGED as exc:
        raise ImageReadError(
            f"This image file is damaged or cut short and cannot be read ({exc})."
        ) from None
    image = _to_rgb(image, notices)
    # Sized again after decoding: draft() only gets close, and EXIF rotation swaps the sides.
    target = _scaled_size(image.size, max_pixels)
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS)
    if _scaled_size(original, max_pixels) != original:
        notices.append(
            f"The image was {original[0]} x {original[1]} pixels; it was scaled down to "
            f"{image.size[0]} x {image.size[1]}."
        )
    return image, notices
