"""Home, as a new user meets it: one sentence saying where to start, with a link to that page,
and a card per page whose whole surface opens the page (in chromium: a click on a card's
description lands on its page)."""

from __future__ import annotations

import re

import pytest
from support.apptest import run_app_page
from support.browser import APP_RUN_TIMEOUT_MS, REPO_ROOT, assert_no_exception, open_app

APP = str(REPO_ROOT / "app.py")  # Home is the default page; its links need app.py's navigation


def test_home_says_where_to_start_and_links_there():
    at = run_app_page(APP, timeout=120)
    start = [m.value for m in at.markdown if "New here?" in m.value]
    assert len(start) == 1 and "Image page" in start[0]
    links = [(link.proto.page, link.proto.label) for link in at.get("page_link")]
    assert ("image", "Open the Image page") in links
    assert {page for page, _label in links} >= {"image", "text", "compare", "models", "guide"}


@pytest.mark.browser
def test_a_click_anywhere_on_a_card_opens_its_page(app_server, page):
    from playwright.sync_api import expect

    open_app(page, app_server, "")
    expect(page.get_by_text("New here? Start on the Image page")).to_be_visible()
    # The description, not the title: before, only the title was a link.
    # A mouse click where the text is (a locator's click would refuse: the link covers it).
    box = page.locator(".st-key-home-card-guide").get_by_text(
        "What each method computes").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page).to_have_url(re.compile(r"/guide$"), timeout=APP_RUN_TIMEOUT_MS)
    expect(page.get_by_role("heading", name="Guide").first).to_be_visible()
    assert_no_exception(page)
