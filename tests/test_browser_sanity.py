"""The Sanity checks page in a real browser: a long cascade is stopped with its Stop button, the
page says so and stays usable, and the share link names the settings."""

from __future__ import annotations

import pytest
from support.browser import (
    APP_RUN_TIMEOUT_MS,
    assert_no_exception,
    open_app,
    share_link,
    wait_for_app,
)

pytestmark = pytest.mark.browser

# Integrated Gradients (50 steps) and SmoothGrad on EfficientNet-Lite0 for every step of the
# cascade: minutes on a CPU, long enough to be stopped while it runs.
LONG = ("sanity?model=efficientnet-lite0&device=cpu&input=photo:chelsea"
        "&methods=integrated_gradients,smoothgrad&partner=(none)&seed=5")


def test_stop_ends_a_long_sanity_run_and_the_link_names_the_settings(app_server, page):
    from playwright.sync_api import expect

    open_app(page, app_server, LONG)
    assert_no_exception(page)
    link = share_link(page)
    assert "methods=integrated_gradients%2Csmoothgrad" in link and "seed=5" in link
    page.get_by_role("button", name="Run the sanity checks").click()
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible(timeout=APP_RUN_TIMEOUT_MS)
    expect(page.locator('[data-testid="stProgress"]')).to_be_visible()
    stop.click()
    expect(page.get_by_text("Stopped before it finished")).to_be_visible(timeout=60_000)
    wait_for_app(page)
    assert_no_exception(page)
    assert page.locator('[data-testid="stDataFrame"]').count() == 0
    # The page stays usable: the quick plain gradient on the small shapes model runs at once.
    open_app(page, app_server, "sanity?model=shapes-cnn&device=cpu&input=shapes:1"
             "&methods=gradient&partner=(none)")
    page.get_by_role("button", name="Run the sanity checks").click()
    wait_for_app(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    assert_no_exception(page)
