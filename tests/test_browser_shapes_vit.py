"""The bundled vision transformer in chromium, as a new user meets it: picked on the Image page
after the default model, explained with attention rollout, attention relevance and Grad-CAM;
on the Sanity page the attention methods replace the ReLU-rule ones, and on Compare the CNN
beside it gets one line for the methods it cannot run."""

from __future__ import annotations

import pytest
from support.browser import (
    APP_RUN_TIMEOUT_MS,
    assert_no_exception,
    open_app,
    screenshot,
    wait_for_app,
)

from saliency_core.models import bundled

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not bundled.is_present("shapes-vit"),
                       reason="bundled shapes-vit missing; make train-bundled"),
]
MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'


def expect(*args, **kwargs):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def choose(page, label: str, option: str) -> None:
    box = page.locator(SIDEBAR).get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill(option)  # typing filters the list, whose far options are drawn only when scrolled to
    page.get_by_role("option", name=option, exact=True).click()
    wait_for_app(page)


# Rollout in every `make test`; the other two (each a fresh page and a model switch) with
# `make test-vit`.
@pytest.mark.parametrize("method", ["Attention rollout",
                                    pytest.param("Attention relevance", marks=pytest.mark.long),
                                    pytest.param("Grad-CAM", marks=pytest.mark.long)])
def test_shapes_vit_is_explained_on_the_image_page(app_server, page, method):
    open_app(page, app_server, "image")  # a new visitor: the default model first
    assert_no_exception(page)
    choose(page, "Model", "shapes-vit")
    assert_no_exception(page)
    main = page.locator(MAIN)
    choose(page, "Method", method)
    assert_no_exception(page)
    expect(main).to_contain_text("Explaining", timeout=APP_RUN_TIMEOUT_MS)
    expect(main.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(
        timeout=APP_RUN_TIMEOUT_MS)
    expect(main).to_contain_text(f"{method} ·")
    screenshot(page, f"shapes-vit-image-{method.lower().replace(' ', '-')}")


@pytest.mark.long
def test_sanity_and_compare_offer_what_shapes_vit_runs(app_server, page):
    open_app(page, app_server, "sanity")
    choose(page, "Model", "shapes-vit")
    assert_no_exception(page)
    sidebar = page.locator(SIDEBAR)
    expect(sidebar).to_contain_text("Attention rollout")
    expect(sidebar).not_to_contain_text("Guided Backprop ×")
    page.get_by_role("button", name="Run the sanity checks").click()
    wait_for_app(page)
    expect(page.locator('[data-testid="stDataFrame"]')).to_have_count(1,
                                                                      timeout=APP_RUN_TIMEOUT_MS)
    assert_no_exception(page)
    screenshot(page, "shapes-vit-sanity")

    open_app(page, app_server, "compare?model=shapes-vit&device=cpu&input=shapes:0"
             "&methods=gradcam,attention_rollout,attention_relevance&model2=shapes-cnn")
    assert_no_exception(page)
    main = page.locator(MAIN)
    expect(main).to_contain_text("Not run on shapes-cnn: Attention rollout, Attention relevance",
                                 timeout=APP_RUN_TIMEOUT_MS)
    assert main.get_by_text("Not run on shapes-cnn").count() == 1
    screenshot(page, "shapes-vit-compare")
