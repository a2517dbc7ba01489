"""The Text and Compare pages in a real browser, with screenshots for the README."""

from __future__ import annotations

import pytest
from support.browser import assert_no_exception, open_app, screenshot, wait_for_app
from test_browser_image import keep_for_readme

pytestmark = pytest.mark.browser


def test_text_page_highlights_tokens_and_follows_edits(app_server, page):
    from playwright.sync_api import expect

    open_app(page, app_server, "text?p.steps=16")
    tokens = page.locator(".token-saliency .token")
    expect(tokens.first).to_be_visible()
    assert tokens.count() > 10
    expect(page.locator('[data-testid="stMain"] .js-plotly-plot')).to_be_visible()
    expect(page.get_by_text("positive", exact=True).first).to_be_visible()
    assert_no_exception(page)

    box = page.get_by_label("Text to explain")
    box.fill("The staff were rude and the room was dirty.")
    box.press("Control+Enter")
    wait_for_app(page)
    expect(page.locator(".token-saliency").get_by_text("rude", exact=True)).to_be_visible()
    expect(page.get_by_text("negative", exact=True).first).to_be_visible()
    assert "rude" in page.url
    page.set_viewport_size({"width": 1366, "height": 1100})
    keep_for_readme(screenshot(page, "text.png", full_page=False), "text.png")

    box.fill("")
    box.press("Control+Enter")
    wait_for_app(page)
    expect(page.get_by_text("Type a sentence")).to_be_visible()
    assert_no_exception(page)


def test_compare_page_shows_a_grid_with_times_and_scoreboard(app_server, page):
    from playwright.sync_api import expect

    # The default model on a photo sample, with the scoreboard switched on (off by default for
    # inputs this large). Methods of one or two passes keep the run short on a busy machine.
    query = "compare?methods=gradient,gradcam,guided_backprop&input=photo:chelsea&score=true"
    open_app(page, app_server, query)
    images = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
    expect(images).to_have_count(3)
    for label in ("Vanilla gradient", "Grad-CAM", "Guided Backprop"):
        expect(page.get_by_text(f"{label} ·")).to_be_visible()
    expect(page.get_by_role("heading", name="efficientnet-lite0: predicts")).to_be_visible()
    expect(page.get_by_role("heading", name="Scoreboard")).to_be_visible()
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    assert_no_exception(page)
    page.set_viewport_size({"width": 1366, "height": 1150})
    keep_for_readme(screenshot(page, "compare.png", full_page=False), "compare.png")


def test_compare_maps_carry_their_scale_and_the_ranking_rule_is_stated(app_server, page):
    from playwright.sync_api import expect

    # The shapes CNN keeps this short; its samples have masks, so localisation is ranked too.
    open_app(page, app_server, "compare?model=shapes-cnn&methods=gradient,gradcam&score=true")
    bars = page.locator('[data-testid="stMain"] .map-scale')
    expect(bars).to_have_count(2)
    for i in range(2):
        bar = bars.nth(i)
        expect(bar.locator(".map-scale-bar")).to_be_visible()
        high = float(bar.get_attribute("data-high"))
        assert high > 0
        # The range is written out, as drawn: from 0 up to the clip value.
        expect(bar).to_contain_text("0")
        expect(bar).to_contain_text(f"{high:.3g}")
    rule = page.get_by_text("The overall rank orders the methods by the mean of their ranks")
    expect(rule).to_be_visible()
    expect(rule).to_contain_text("lower deletion AUC")
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    assert_no_exception(page)
    page.set_viewport_size({"width": 1400, "height": 1000})
    screenshot(page, "compare-scale-and-ranking.png", full_page=False)


@pytest.mark.browser
@pytest.mark.parametrize("view", ["compare?model=shapes-cnn&methods=gradient&input=shapes:3",
                                  "sanity?model=shapes-cnn&input=shapes:3"])
def test_share_button_heads_the_result_on_compare_and_sanity(app_server, page, view):
    """As on the Image and Text pages, sharing is one visible button above the pictures, not a
    box at the bottom of the page."""
    from playwright.sync_api import expect

    open_app(page, app_server, view)
    first_picture = page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first
    expect(first_picture).to_be_visible()
    button = page.get_by_role("button", name="Share this view")
    expect(button).to_be_visible()
    assert button.bounding_box()["y"] < first_picture.bounding_box()["y"]
    assert_no_exception(page)
