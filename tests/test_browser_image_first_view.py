"""What a new user meets first on the Image page (issue 26): a fresh session's default view reads
well with no warning, and a picture the model cannot really see (1 x 1 pixel) is explained
with a notice saying what its map can and cannot mean."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from support.browser import (
    APP_RUN_TIMEOUT_MS,
    assert_no_exception,
    open_app,
    replace_upload,
    screenshot,
    wait_for_app,
)

pytestmark = pytest.mark.browser

MAIN = '[data-testid="stMain"]'
HEATMAP = f'{MAIN} [data-testid="stPlotlyChart"]'


def alerts(page, kind: str) -> list[str]:
    boxes = page.locator(f'{MAIN} [data-testid="stAlertContent{kind}"]')
    return [boxes.nth(i).inner_text() for i in range(boxes.count())]


def test_fresh_session_first_view_has_a_map_and_no_warning(app_server, page):
    from playwright.sync_api import expect

    open_app(page, app_server, "image")
    expect(page.locator(HEATMAP)).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    assert_no_exception(page)
    assert "model=efficientnet-lite0" in page.url and "input=photo%3Achelsea" in page.url
    screenshot(page, "i26-image-first-view.png", full_page=True)
    assert alerts(page, "Warning") == [] and alerts(page, "Error") == []


def test_a_one_pixel_upload_is_explained_with_a_notice(app_server, page):
    from playwright.sync_api import expect

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 120, 40)).save(buffer, format="PNG")
    open_app(page, app_server, "image?method=gradient")
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    replace_upload(page, sidebar, "dot.png", "image/png", buffer.getvalue())
    expect(page.locator(HEATMAP)).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    assert_no_exception(page)
    notice = page.locator(f'{MAIN} [data-testid="stAlert"]', has_text="1 x 1 pixel")
    expect(notice).to_have_count(1)
    text = notice.inner_text()
    assert "guess" in text and "interpolation" in text
    screenshot(page, "i26-image-one-pixel.png", full_page=True)
