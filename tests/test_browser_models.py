"""The Models page's bring-your-own weights in chromium: weights far over the images' limit are
taken and loaded, while the image uploader keeps its own limit."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save
from support.browser import assert_no_exception, open_app, screenshot, wait_for_app

from workbench.hosting import uploads

pytestmark = pytest.mark.browser
MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'


def expect(*args, **kwargs):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def test_weights_over_the_image_limit_load_and_images_keep_theirs(app_server, page, tmp_path):
    torch.manual_seed(0)
    # The form's defaults, resnet18 with 1,000 classes: 47 MB, nearly twice the images' limit.
    data = save(torchvision.models.resnet18().state_dict())
    assert len(data) > uploads.DEFAULT_IMAGE_MB * 2**20
    open_app(page, app_server, "models")
    form = page.locator('[data-testid="stForm"]')
    weights = form.locator('[data-testid="stFileUploader"]').first
    expect(weights).to_contain_text(f"{uploads.weights_limit_mb()}MB per file")
    # A path, not a buffer: Playwright hands chromium the file instead of piping 47 MB of base64.
    path = tmp_path / "resnet18.safetensors"
    path.write_bytes(data)
    weights.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(path)
    expect(weights.locator("[data-testid='stFileChip']")).to_have_count(1, timeout=60_000)
    expect(weights.locator("[data-testid='stFileChipIconSpinner']")).to_have_count(
        0, timeout=60_000)
    wait_for_app(page)
    form.get_by_role("button", name="Load model").click()
    wait_for_app(page)
    assert_no_exception(page)
    expect(page.locator(MAIN)).to_contain_text("Loaded resnet18-upload-", timeout=60_000)
    screenshot(page, "models-byo-loaded")
    # Free the server's upload slots for the other tests' sessions.
    page.get_by_role("button", name="Remove my uploaded models").click()
    wait_for_app(page)

    # The cheapest first view: the image page computes a map before the uploader is reached.
    open_app(page, app_server, "image?model=shapes-cnn&method=gradient")
    sidebar = page.locator(SIDEBAR)
    sidebar.get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    uploader = sidebar.locator('[data-testid="stFileUploader"]')
    # The limit the browser enforces (a file over it: test_hostile_browser's "over the upload
    # limit"); the server checks it again (tests/test_models_byo_upload.py).
    expect(uploader).to_contain_text(f"{uploads.DEFAULT_IMAGE_MB}MB per file")
    screenshot(page, "image-upload-limit")
