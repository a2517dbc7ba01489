"""The Dataset page in a real browser as a new user meets it: from the home page to the page,
the bundled sample run, the gallery, the strategies with the planted watermark on top, a model
switch, and a zip uploaded with a damaged file among its images."""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from support.browser import assert_no_exception, open_app, screenshot, wait_for_app

from saliency_core.datasets.samples import shapes_watermark

# Minutes of chromium on a busy machine: `make test-dataset` runs them (the long tier).
pytestmark = [pytest.mark.browser, pytest.mark.long]
SHOTS = Path("/work/shots/dataset")


def keep(path: Path) -> None:
    """Also where the team looks at screenshots, when that folder exists."""
    if SHOTS.is_dir():
        shutil.copy(path, SHOTS / path.name)


def run_and_wait(page) -> None:
    from playwright.sync_api import expect

    page.get_by_role("button", name="Run", exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text("Images explained")).to_be_visible(timeout=120_000)


def test_fresh_session_runs_the_sample_and_sees_the_shortcut(app_server, page):
    from playwright.sync_api import expect

    open_app(page, app_server)
    page.get_by_test_id("stTopNav").get_by_role("link", name="Dataset").click()
    wait_for_app(page)
    expect(page.get_by_text("Press Run to explain the 240 images")).to_be_visible()
    keep(screenshot(page, "dataset-fresh.png", full_page=False))
    run_and_wait(page)
    gallery = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
    expect(gallery.first).to_be_visible()
    assert_no_exception(page)
    keep(screenshot(page, "dataset-gallery.png"))
    # A picture is a link to the Image page with the same model, method and settings.
    href = page.locator('[data-testid="stMain"] [data-testid="stImage"] a').first.get_attribute("href")
    assert href and "image?" in href and "input=upload%3A" in href and "method=gradcam" in href
    page.get_by_role("tab", name="Strategies").click()
    expect(page.get_by_role("heading", name="square: 30 images").first).to_be_visible()
    expect(page.get_by_text("looks at the corners or border").first).to_be_visible()
    keep(screenshot(page, "dataset-strategies.png"))
    page.get_by_role("button", name="Draw the t-SNE embedding").click()
    wait_for_app(page)
    expect(page.locator('[data-testid="stMain"] .js-plotly-plot')).to_be_visible(timeout=120_000)
    keep(screenshot(page, "dataset-embedding.png"))
    assert_no_exception(page)

    # A model switch: the last run stays until Run, then the clean model has no corner cluster.
    box = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Model", exact=True)
    box.click()
    box.fill("shapes-cnn")
    page.get_by_role("option", name="shapes-cnn", exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text("The settings changed since this run")).to_be_visible()
    run_and_wait(page)
    page.get_by_role("tab", name="Strategies").click()
    expect(page.get_by_role("heading", name="Embedding of the maps")).to_be_visible()
    assert "model=shapes-cnn&" in page.url
    keep(screenshot(page, "dataset-clean-model.png"))
    assert_no_exception(page)

    open_app(page, app_server, href[href.index("image?"):])
    expect(page.get_by_text("Input as the model sees it")).to_be_visible(timeout=120_000)
    assert "model=shapes-cnn-watermark" in page.url and "method=gradcam" in page.url
    keep(screenshot(page, "dataset-opened-on-image-page.png", full_page=False))
    assert_no_exception(page)


def test_an_uploaded_zip_is_explained_and_its_bad_file_listed(app_server, page):
    from playwright.sync_api import expect

    sample = shapes_watermark(36)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "a") as archive:
        with zipfile.ZipFile(io.BytesIO(sample.zip_bytes())) as original:
            for info in original.infolist():
                archive.writestr(info, original.read(info))
        archive.writestr("square/broken.png", b"\x89PNG\r\n\x1a\n not really")
        archive.writestr("../outside.png", b"x")
    open_app(page, app_server, "dataset")
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.get_by_text("Upload", exact=True).click()
    wait_for_app(page)
    sidebar.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        {"name": "shapes.zip", "mimeType": "application/zip", "buffer": buffer.getvalue()})
    wait_for_app(page, settle_ms=600)
    expect(page.get_by_text("37 images, 1 file left out")).to_be_visible(timeout=60_000)
    run_and_wait(page)
    expect(page.get_by_text("Files left out (2)")).to_be_visible()
    assert "data=upload%3A" in page.url
    keep(screenshot(page, "dataset-upload.png"))
    assert_no_exception(page)


def test_stop_keeps_the_images_done(app_server, page):
    from playwright.sync_api import expect

    # Integrated Gradients with 64 steps: about a minute for the 240 images on a CPU.
    open_app(page, app_server, "dataset?model=shapes-cnn&method=integrated_gradients&p.steps=64")
    page.get_by_role("button", name="Run", exact=True).click()
    # Chunks of 4 images (256 model passes): past 12 done, the first chunks are kept.
    expect(page.get_by_text(re.compile(r"\b(1[2-9]|[2-9]\d|1\d\d) of 240 images done"))
           ).to_be_visible(timeout=180_000)
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text("Stopped: the images explained before Stop are shown")).to_be_visible()
    expect(page.get_by_text("(stopped)")).to_be_visible()
    keep(screenshot(page, "dataset-stopped.png", full_page=False))
    assert_no_exception(page)
