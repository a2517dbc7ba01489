"""Hostile strings from links, file names and uploaded models are shown as plain text; odd
link values (unicode digits, repeated methods) get a message instead of a crash; a bug shows a
reference, never a traceback."""

from __future__ import annotations

import logging
import tomllib

import pytest
from streamlit.testing.v1 import AppTest
from support.apptest import run_app_page, shown
from support.browser import REPO_ROOT

from workbench.ui.boundary import LOG
from workbench.ui.plaintext import plain, visible
from workbench.ui.urlstate import UrlReader

IMAGE = str(REPO_ROOT / "pages" / "image.py")
COMPARE = str(REPO_ROOT / "pages" / "compare.py")
LOGIN_LINK = "[Log in](https://evil.example/login)"
PIXEL = "![x](https://evil.example/pixel.png)"


@pytest.mark.parametrize("hostile", [
    LOGIN_LINK, PIXEL, ":red[alarm] :material/lock:", "<script>alert(1)</script>",
    "$x^2$", "**bold** _it_ `code`", "# heading\n- item", "<https://evil.example>",
    "https://evil.example/a", "a|b|c\n|-|-|",
])
def test_plain_escapes_every_markdown_construct(hostile):
    escaped = plain(hostile)
    # Every ASCII punctuation character is preceded by a backslash, so Markdown keeps none of
    # its meaning; the letters are untouched.
    i = 0
    while i < len(escaped):
        ch = escaped[i]
        if ch == "\\":
            assert escaped[i + 1] in r"""!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"""
            i += 2
            continue
        assert ch.isalnum() or ch in " \ufffd\u200b", (ch, escaped)
        i += 1


def test_visible_neutralises_invisible_and_control_characters():
    assert visible("a\u202eb\u200bc\x00d\x1b") == "a\ufffdb\ufffdc\ufffdd\ufffd"
    assert visible("x" * 1000, limit=10) == "x" * 9 + "…"
    assert visible("two\nlines") == "two lines"


def test_number_parser_refuses_unicode_digits():
    reader = UrlReader({"steps": "²", "alpha": "٣", "clip": "99"})
    assert reader.number("steps", 32, 1, 100, integer=True) == 32
    assert reader.number("alpha", 0.5, 0, 5) == 0.5
    assert reader.number("clip", 50.0, 0, 100) == 99.0
    assert len(reader.problems) == 2


def warnings_of(at: AppTest) -> list[str]:
    return [w.value for w in at.warning]


@pytest.mark.parametrize("source", ["shapes:²", "shapes:٣", "shapes:-1", "shapes:" + "9" * 150])
def test_unicode_digit_sample_in_a_link_is_a_message(source):
    at = run_app_page(IMAGE, {"input": source, "method": "gradient", "model": "shapes-cnn"})
    assert any("no sample called" in w for w in warnings_of(at)), warnings_of(at)


def test_markdown_in_link_parameters_is_shown_as_text():
    at = run_app_page(IMAGE, {"method": LOGIN_LINK, "cmap": PIXEL, "model": "shapes-cnn"})
    source = " ".join(warnings_of(at))
    assert "[Log in](" not in source and "![x](" not in source and "https://" not in source
    assert f"{LOGIN_LINK}" in shown(source) and PIXEL in shown(source)


@pytest.mark.parametrize("query", [
    {"methods": "gradient,gradient"},
    {"methods": "gradcam,gradcam,hirescam", "gradcam.layer": "features.block4"},
    {"methods": "gradcam,hirescam,gradcam", "gradcam.layer": "features.block4",
     "hirescam.layer": "features.block3"},
])
def test_compare_link_with_a_repeated_method_shows_each_once(query):
    at = run_app_page(COMPARE, {**query, "model": "shapes-cnn", "score": "false"})
    assert any("more than once" in w for w in warnings_of(at)), warnings_of(at)
    chosen = at.multiselect[0].value
    assert len(chosen) == len(set(chosen))
    assert not at.error, [e.value for e in at.error]


def test_served_config_hides_error_details():
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def _broken_page():
    from workbench.ui.boundary import guarded

    def page():
        import streamlit as st

        st.write("before the bug")
        raise RuntimeError("secret /srv/path detail")

    guarded(page)


def test_error_boundary_shows_a_reference_and_logs_the_traceback():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    LOG.addHandler(handler)
    try:
        at = AppTest.from_function(_broken_page).run()
    finally:
        LOG.removeHandler(handler)
    assert not at.exception
    shown = at.error[0].value
    assert "reference" in shown and "/srv/path" not in shown and "RuntimeError" not in shown
    (record,) = records
    ref = record.args[0]
    assert ref in shown
    assert "secret /srv/path detail" in logging.Formatter().format(record)  # the traceback
