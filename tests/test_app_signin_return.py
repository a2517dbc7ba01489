"""Where a sign-in returns to (workbench/hosting/signin_return.py): the token inside Streamlit's XSRF
cookie is the browser's key whatever mask a renewed cookie carries, and kept targets expire
and are bounded in number. The round trip itself is in tests/test_browser_auth.py."""

from __future__ import annotations

import binascii
import os

from workbench.hosting.signin_return import Targets, xsrf_token


def cookie(token: bytes, mask: bytes, stamp: int = 1700000000) -> str:
    masked = bytes(b ^ mask[i % len(mask)] for i, b in enumerate(token))
    return f"2|{binascii.b2a_hex(mask).decode()}|{binascii.b2a_hex(masked).decode()}|{stamp}"


def test_the_token_is_the_same_under_any_mask():
    token = os.urandom(16)
    assert xsrf_token(cookie(token, b"\x01\x02\x03\x04")) == token
    assert xsrf_token(cookie(token, os.urandom(4), 1800000000)) == token
    assert xsrf_token('"' + cookie(token, b"abcd") + '"') == token
    for bad in (None, "", "2|zz|00|1", "2|only|three", "2||00|1", "not hex"):
        assert xsrf_token(bad) is None


def test_targets_are_taken_once_expire_and_are_bounded():
    now = [0.0]
    kept = Targets(ttl_s=10, limit=2, clock=lambda: now[0])
    kept.put("a", "image", {"model": "shapes-cnn", "huge": "x" * 10_000})
    target = kept.pop("a")
    assert target.url_path == "image" and target.params == {"model": "shapes-cnn"}
    assert kept.pop("a") is None  # taken once
    kept.put("b", "text", {})
    now[0] = 11.0
    assert kept.pop("b") is None  # expired
    for key in "cde":
        kept.put(key, "compare", {})
    assert kept.pop("c") is None and kept.pop("e") is not None  # the oldest went first
