"""The Text page's Next word mode in a real browser, as a new user meets it: the page opened
fresh (classification first), switched to Next word, run on the bundled language model, a
generated token clicked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.browser import (
    assert_no_exception,
    keep_copy,
    open_app,
    screenshot,
    wait_for_app,
)

pytestmark = pytest.mark.browser
# Where a person reviewing the mode looks at its screenshots (besides tests/output/).
SHOTS = Path(os.environ.get("SALIENCY_SHOTS_DIR", "/work/shots/lmapp"))


def keep(path: Path) -> None:
    keep_copy(path, SHOTS)


def test_switch_to_next_word_run_the_bundled_model_and_click_a_token(app_server, page):
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1366, "height": 1200})
    open_app(page, app_server, "text")
    expect(page.get_by_role("heading", name="Text saliency")).to_be_visible()
    assert_no_exception(page)

    main = page.locator('[data-testid="stMain"]')
    main.locator('[data-testid="stButtonGroup"]').get_by_text(
        "Next word", exact=True
    ).click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="Next-word saliency")).to_be_visible()
    heat = main.locator(".js-plotly-plot .heatmaplayer")
    expect(heat).to_be_visible()
    assert_no_exception(page)
    assert "mode=next" in page.url and "patterns-lm" in page.url
    keep(screenshot(page, "nextword-default.png", full_page=True))

    # The first generated word copies the name; its highlighted prompt ends with the comma.
    tokens = main.locator(".token-saliency .token")
    expect(tokens.first).to_be_visible()
    first_count = tokens.count()
    pills = main.locator('[data-testid="stButtonGroup"]').last
    pills.locator("button", has_text="2. ").click()
    wait_for_app(page)
    expect(tokens).to_have_count(first_count + 1)
    assert "token=1" in page.url
    assert_no_exception(page)
    keep(screenshot(page, "nextword-second-token.png", full_page=True))

    box = page.get_by_label("Prompt")
    box.fill("the keys to the old table")
    box.press("Control+Enter")
    wait_for_app(page)
    expect(
        main.locator(".token-saliency").get_by_text("keys", exact=True)
    ).to_be_visible()
    assert_no_exception(page)
    keep(screenshot(page, "nextword-agreement.png", full_page=True))

    box.fill("")
    box.press("Control+Enter")
    wait_for_app(page)
    expect(page.get_by_text("Type a prompt")).to_be_visible()
    assert_no_exception(page)
