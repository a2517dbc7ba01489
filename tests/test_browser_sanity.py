"""The Sanity checks page in a real browser: a long cascade is stopped with its Stop button, the
page says so and stays usable, and the share link names the settings."""

from __future__ import annotations

import pytest
from support.browser import (
    APP_RUN_TIMEOUT_MS,
    assert_no_exception,
    open_app,
    screenshot,
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


def _choose(page, label: str, option: str) -> None:
    sidebar = page.locator('[data-testid="stSidebar"]')
    box = sidebar.get_by_role("combobox", name=label, exact=True)
    box.click()
    # Typing filters the list, whose far options are not drawn until scrolled to.
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


def _selectbox(page, label: str):
    return page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name=label,
                                                                 exact=True)


def test_a_model_switch_after_a_run_shows_nothing_under_the_new_labels(app_server, page):
    """Issue 26: shapes-cnn's result was shown under ImageNet's labels ("goldfish") after a
    switch to efficientnet-lite0, with the shapes sample and shapes-cnn's twin kept; Run then
    failed on the twin and dropped the parameter test's result."""
    from playwright.sync_api import expect

    open_app(page, app_server, "sanity?model=shapes-cnn&device=cpu&input=shapes:0&methods=gradient")
    page.get_by_role("button", name="Run the sanity checks").click()
    wait_for_app(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    _choose(page, "Model", "efficientnet-lite0")
    assert_no_exception(page)
    main = page.locator('[data-testid="stMain"]')
    expect(main).not_to_contain_text("goldfish")
    expect(main).not_to_contain_text("Explaining class")
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(0)
    # The input and the shuffled-labels model followed the model, and the page says why none.
    expect(_selectbox(page, "Sample")).to_have_value("Photo: Chelsea the cat (a tabby)")
    expect(_selectbox(page, "Model trained on shuffled labels")).to_have_value("(none)")
    note = page.locator('[data-testid="stSidebar"]').get_by_text("train-bundled")
    expect(note).to_be_visible()
    screenshot(page, "sanity_after_switch_to_efficientnet")
    note.scroll_into_view_if_needed()
    screenshot(page, "sanity_after_switch_to_efficientnet_sidebar", full_page=False)
    # An unfit partner is refused before Run ...
    _choose(page, "Model trained on shuffled labels", "shapes-cnn-random-labels")
    expect(main).to_contain_text("data randomization test is skipped")
    screenshot(page, "sanity_efficientnet_unfit_partner", full_page=False)
    # ... and, on shapes-cnn with an unfit partner, Run shows the parameter test's result.
    _choose(page, "Model", "shapes-cnn")
    expect(_selectbox(page, "Sample")).to_have_value("Shapes #0: square")
    _choose(page, "Model trained on shuffled labels", "efficientnet-lite0")
    seed = page.get_by_role("spinbutton", name="Seed")
    seed.fill("1")
    seed.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name="Run the sanity checks").click()
    wait_for_app(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    expect(main).to_contain_text("data randomization test is skipped")
    assert_no_exception(page)
    screenshot(page, "sanity_unfit_partner_run")
