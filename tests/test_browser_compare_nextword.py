"""The Compare page's Next word mode in chromium, as a new user meets it: the page opened fresh
(the image comparison first), switched to Next word, where the default methods explain the
bundled language model's generated words side by side, then a typed continuation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.browser import (
    app_url,
    assert_no_exception,
    keep_copy,
    screenshot,
    wait_for_app,
)

# A minute of chromium on 2 loaded cores (three methods on a fresh server): make test-lm.
pytestmark = [pytest.mark.browser, pytest.mark.long]
SHOTS = Path(os.environ.get("SALIENCY_SHOTS_DIR", "/work/shots/lmpoint"))


def test_switch_to_next_word_and_compare_the_default_methods(app_server, page):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1366, "height": 1100})
    # A fresh visit starts the image comparison (five methods on a photo: minutes on a loaded
    # CPU); a user switches mode while it runs, which interrupts it.
    page.goto(app_url(app_server, "compare"), wait_until="domcontentloaded")
    expect(page.get_by_role("heading", name="Compare methods")).to_be_visible(timeout=60_000)
    main = page.locator('[data-testid="stMain"]')
    switch = main.locator('[data-testid="stButtonGroup"]').get_by_text("Next word", exact=True)
    expect(switch).to_be_visible()
    expect(main.get_by_text("maps ready")).to_be_visible(timeout=60_000)
    assert_no_exception(page)
    keep_copy(screenshot(page, "compare-fresh.png", full_page=True), SHOTS)

    switch.click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Compare methods: next word")).to_be_visible()
    heat = main.locator(".js-plotly-plot .heatmaplayer")
    expect(heat).to_have_count(3)
    assert_no_exception(page)
    assert "mode=next" in page.url and "methods=gradient%2Cgradient_x_input" in page.url
    keep_copy(screenshot(page, "compare-next-word.png", full_page=True), SHOTS)

    main.get_by_text("Type the continuation").click()
    wait_for_app(page)
    box = page.get_by_label("Continuation to explain")
    box.fill("alice bought a kite")
    box.press("Enter")
    wait_for_app(page)
    expect(heat).to_have_count(3)
    expect(main.get_by_text("alice · bought · a · kite")).to_be_visible()
    assert_no_exception(page)
    keep_copy(screenshot(page, "compare-next-word-typed.png", full_page=True), SHOTS)
