"""The hostile inputs of issue 13, generated into a folder: image uploads, texts, links and
bring-your-own weights, each with what the app must answer.

A case's ``expect`` lists phrases of which at least one must be on the page afterwards (the
message that says what was wrong or what was done); ``absent`` lists what must not be there.
Files are written by ``write_files(folder)`` so that a failing case can be opened by hand.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save

OK = "__ok__"  # the input is fine: the result (or an explaining notice) must appear
TYPE_REFUSED = "files are not allowed"
TOO_LARGE = "or smaller"
NOT_IMAGE = "not an image we can read"
DAMAGED = "damaged"
EMPTY = "The file is empty"
BOMB = "megapixels"
BOMB_PILLOW = "too many pixels"
SCALED = "scaled down"


@dataclass
class Case:
    name: str
    kind: str  # "image", "text", "link", "model"
    expect: list[str]
    filename: str = ""
    data: bytes = b""
    text: str = ""
    path: str = ""  # for links: the page and query
    absent: list[str] = field(default_factory=list)
    mime: str = "application/octet-stream"


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _photo(size=(96, 80), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG declaring width x height pixels, a few hundred kB at most."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
            + _png_chunk(b"IEND", b""))


def image_cases() -> list[Case]:
    photo = _photo()
    png, jpeg = _encode(photo, "PNG"), _encode(photo, "JPEG", quality=90)
    webp, bmp, tiff = _encode(photo, "WEBP"), _encode(photo, "BMP"), _encode(photo, "TIFF")
    cases = [Case("empty png", "image", [EMPTY], "empty.png", b"")]
    for fmt, data in (("png", png), ("jpg", jpeg), ("webp", webp), ("bmp", bmp), ("tiff", tiff)):
        cases.append(Case(f"truncated {fmt}", "image", [DAMAGED, NOT_IMAGE], f"cut.{fmt}",
                          data[: len(data) // 2]))
        corrupt = bytearray(data)
        for i in range(len(corrupt) // 3, len(corrupt) - 8, 7):
            corrupt[i] ^= 0x5A
        cases.append(Case(f"corrupt {fmt}", "image", [DAMAGED, NOT_IMAGE, OK],
                          f"corrupt.{fmt}", bytes(corrupt)))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("a.txt", "hello")
    cases += [
        Case("html named png", "image", [NOT_IMAGE], "page.png",
             b"<html><body><script>alert(1)</script></body></html>"),
        Case("svg named png", "image", [NOT_IMAGE], "vector.png",
             b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        Case("pdf named jpg", "image", [NOT_IMAGE], "doc.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\n"),
        Case("zip named png", "image", [NOT_IMAGE], "archive.png", zipped.getvalue()),
        Case("png+zip polyglot", "image", [OK], "polyglot.png", png + zipped.getvalue()),
        Case("bomb under Pillow's limit", "image", [BOMB], "bomb-under.png",
             _bomb_png(9_000, 9_000)),
        Case("bomb over Pillow's limit", "image", [BOMB, BOMB_PILLOW], "bomb-over.png",
             _bomb_png(20_000, 20_000)),
        Case("1 x N", "image", [OK], "line.png", _encode(_photo((1, 900)), "PNG")),
        Case("N x 1", "image", [OK], "row.png", _encode(_photo((900, 1)), "PNG")),
        Case("1 x 1", "image", [OK], "dot.png", _encode(_photo((1, 1)), "PNG")),
        Case("very large jpeg", "image", [SCALED], "large.jpg",
             _encode(_photo((2400, 1800)), "JPEG", quality=70)),
        Case("16-bit png", "image", ["16-bit"], "deep.png", _encode(Image.fromarray(
            np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16), "PNG")),
        Case("palette with transparency", "image", ["transparent"], "palette.png",
             _encode(photo.convert("P"), "PNG", transparency=0)),
        Case("rgba", "image", ["transparent"], "alpha.png",
             _encode(Image.new("RGBA", (64, 64), (255, 0, 0, 100)), "PNG")),
        Case("cmyk jpeg", "image", ["CMYK"], "print.jpg", _encode(photo.convert("CMYK"), "JPEG")),
        Case("grayscale", "image", [OK], "gray.png", _encode(photo.convert("L"), "PNG")),
        Case("exif rotated", "image", [OK], "rotated.jpg", _exif_rotated()),
        Case("animated webp", "image", ["frames; the first one is used"], "anim.webp",
             _animated("WEBP")),
        Case("animated png", "image", ["frames; the first one is used"], "anim.png",
             _animated("PNG")),
        Case("multi-page tiff", "image", ["frames; the first one is used"], "pages.tiff",
             _animated("TIFF")),
        Case("gif refused by type", "image", [TYPE_REFUSED], "anim.gif", _animated("GIF")),
        Case("huge metadata chunk", "image", [OK], "meta.png", _with_metadata(png, 4_000_000)),
        Case("at the upload limit", "image", [OK], "limit.png",
             _with_metadata(png, 24_000_000)),
        Case("over the upload limit", "image", [TOO_LARGE], "over.png",
             _with_metadata(png, 26 * 1024 * 1024)),
        Case("path parts in the name", "image", [OK], "../../etc/passwd.png", png),
        Case("markdown link in the name", "image", ["Log in](https"], "[Log in](https:__evil.example).png",
             b"not an image", absent=["evil.example"]),
        Case("html in the name", "image", ["<img src=x"], "<img src=x onerror=alert(1)>.png",
             b"garbage"),
        Case("unicode name", "image", [OK], "фото 日本語 🖼.png", png),
        Case("very long name", "image", [NOT_IMAGE], "n" * 240 + ".png", b"garbage"),
    ]
    return cases


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_photo((120, 60)), "JPEG", exif=exif)


def _animated(fmt: str) -> bytes:
    frames = [_photo((48, 48), seed=i) for i in range(3)]
    kwargs = {"save_all": True, "append_images": frames[1:]}
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
        kwargs["append_images"] = frames[1:]
    return _encode(frames[0], fmt, **kwargs)


def _with_metadata(png: bytes, size: int) -> bytes:
    """The PNG with an incompressible text chunk of ``size`` bytes before its data."""
    body = b"Comment\x00" + os.urandom(size).hex().encode()[:size]
    return png[:33] + _png_chunk(b"tEXt", body) + png[33:]


def text_cases() -> list[Case]:
    return [
        Case("empty text", "text", ["Type a sentence"], text=""),
        Case("whitespace", "text", ["Type a sentence"], text="   \n\t  "),
        Case("100k characters", "text", ["only the first 5,000 are used"], text="a dull film. " * 7_700),
        Case("control characters", "text", [OK], text="a \x07bell\x1b[31m red \x08film"),
        Case("zero-width characters", "text", [OK], text="gr\u200beat\u200d fi\ufeffm"),
        Case("null bytes", "text", [OK], text="a fine\x00 film\x00"),
        Case("right-to-left text", "text", [OK], text="\u202eemlif taerg a \u05e9\u05dc\u05d5\u05dd"),
        Case("html and script tags", "text", [OK],
             text="<script>alert(1)</script><b>bold</b><img src=x onerror=alert(2)> film"),
    ]


def link_cases() -> list[Case]:
    ignored = "was ignored"
    page = "image?model=shapes-cnn&"
    return [
        Case("steps out of range", "link", [ignored], path=page + "method=integrated_gradients&p.steps=100000"),
        Case("steps not a number", "link", [ignored], path=page + "method=integrated_gradients&p.steps=many"),
        Case("NaN", "link", [ignored], path=page + "alpha=nan"),
        Case("inf", "link", [ignored], path=page + "clip=inf"),
        Case("negative", "link", [ignored], path=page + "method=smoothgrad&p.samples=-5"),
        Case("unicode digit", "link", [ignored], path=page + "method=integrated_gradients&p.steps=%C2%B2"),
        Case("unicode digit sample", "link", ["no sample called"], path=page + "input=shapes:%C2%B2"),
        Case("unknown model", "link", [ignored], path="image?model=gpt-17"),
        Case("unknown method", "link", [ignored], path=page + "method=telepathy"),
        Case("unknown parameter", "link", [OK], path=page + "method=gradient&p.nonsense=1&zzz=2"),
        Case("duplicate parameter", "link", [OK], path=page + "method=gradient&alpha=0.2&alpha=0.9"),
        Case("path traversal in input", "link", ["malformed", "not understood", "no sample"],
             path=page + "input=upload:../../../../etc/passwd"),
        Case("unknown upload hash", "link", ["does not have"], path=page + "input=upload:" + "0" * 64),
        Case("script tag", "link", [ignored], path=page + "cmap=%3Cscript%3Ealert(1)%3C/script%3E"),
        Case("markdown link", "link", ["Log in](https"], path=page
             + "method=%5BLog%20in%5D(https://evil.example/login)", absent=["evil.example/login"]),
        Case("remote image", "link", [ignored], path=page + "sign=!%5Bx%5D(https://evil.example/p.png)"),
        Case("very long query", "link", [ignored], path=page + "cmap=" + "x" * 6000),
        Case("bad target", "link", [ignored], path=page + "target=%C2%B2"),
        Case("compare duplicate method", "link", ["more than once"],
             path="compare?model=shapes-cnn&score=false&methods=gradient,gradient"),
        Case("compare repeated cam with layer", "link", ["more than once"],
             path="compare?model=shapes-cnn&score=false&methods=gradcam,gradcam&gradcam.layer=features.block4"),
        Case("compare unknown layer", "link", [ignored],
             path="compare?model=shapes-cnn&score=false&methods=gradcam&gradcam.layer=..%2F..%2Fetc"),
        Case("text too long in a link", "link", [ignored], path="text?text=" + "a" * 6000),
        Case("text max_tokens out of range", "link", [ignored], path="text?max_tokens=100000"),
    ]


def _resnet18_state(num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """The Models page form's default architecture; as int8 or float16 it fits the upload
    limit (float32 would not)."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=num_classes).state_dict()


def _safetensors_header(header: bytes, length: int | None = None, rest: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + rest


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def model_cases(marker: Path) -> list[Case]:
    """``marker`` is a folder path that exists afterwards only if something was unpickled."""
    state = _resnet18_state()
    unreadable = "not a readable safetensors file"
    wrong_dtype = {k: (v.to(torch.int8) if v.is_floating_point() else v) for k, v in state.items()}
    nan = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    key = next(k for k, v in state.items() if v.dim() == 4)
    nan[key] = torch.full_like(nan[key], float("nan"))
    small = {k: (v.to(torch.int8) if v.is_floating_point() else v)
             for k, v in _resnet18_state(5).items()}
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.safetensors", b"\x00" * 50_000_000)
    pickled = pickle.dumps(_Payload(str(marker)))
    torch_saved = io.BytesIO()
    torch.save({"weight": _Payload(str(marker))}, torch_saved)
    cases = [
        Case("absurd header length", "model", [unreadable], "absurd.safetensors",
             _safetensors_header(b"{}", length=2**62)),
        Case("non-JSON header", "model", [unreadable], "nonjson.safetensors",
             _safetensors_header(b"this is not json at all")),
        Case("offsets past the end", "model", [unreadable], "short.safetensors",
             _safetensors_header(header, rest=b"\x00" * 16)),
        Case("wrong dtype", "model", ["not floating point"], "int8.safetensors", save(wrong_dtype)),
        Case("NaN weights", "model", ["NaN or infinite"], "nan.safetensors", save(nan)),
        Case("wrong shapes", "model", ["wrong shape"], "shapes.safetensors", save(small)),
        Case("another architecture", "model", ["does not fit"], "other.safetensors",
             save({"features.0.weight": torch.zeros(8, 3, 3, 3)})),
        Case("zip bomb", "model", [unreadable], "bomb.safetensors", bomb.getvalue()),
        Case("pickle named safetensors", "model", [unreadable], "pickle.safetensors", pickled),
        Case("torch.save named safetensors", "model", [unreadable], "torch.safetensors",
             torch_saved.getvalue()),
        # Weights have a limit of their own, far above the images' 25 MB (a file over it would
        # be 400 MB: the browser refuses it as it refuses "over the upload limit" above).
        Case("over the image limit", "model", [unreadable], "big.safetensors",
             b"\x00" * (26 * 1024 * 1024)),
    ]
    for ext in (".pt", ".pth", ".bin", ".ckpt"):
        cases.append(Case(f"pickle {ext}", "model", [TYPE_REFUSED], f"weights{ext}",
                          torch_saved.getvalue()))
    return cases


def all_cases(marker: Path) -> list[Case]:
    return image_cases() + text_cases() + link_cases() + model_cases(marker)


def write_files(cases: list[Case], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, case in enumerate(cases):
        if case.kind in ("image", "model"):
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in case.filename)[-60:]
            (folder / f"{n:03d}-{safe}").write_bytes(case.data)
