"""A Hugging Face vision transformer in chromium: a tiny ViT checkpoint in the server's model
cache (as ``fetch hf:<repo>`` leaves it) is explained on the Image page with attention rollout
and attention relevance, and the Models page tells how to bring such a model by name."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from support.browser import (
    REPO_ROOT,
    assert_no_exception,
    open_app,
    screenshot,
    serve_streamlit,
)

import saliency_core

pytestmark = pytest.mark.browser
MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'
REPO = "org/tiny-vit"
COMMIT = "0" * 40


def expect(*args, **kwargs):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def write_hub_snapshot(cache):
    """What ``python -m saliency_core fetch hf:org/tiny-vit`` leaves in the cache."""
    repo_dir = cache / "hf" / "hub" / ("models--" + REPO.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=64, patch_size=8, num_labels=3,
        id2label={0: "circle", 1: "square", 2: "triangle"},
        label2id={"circle": 0, "square": 1, "triangle": 2},
    )  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(snapshot)
    (snapshot / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": 64, "width": 64},
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
            }
        )
    )
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)


@pytest.fixture(scope="module")
def vit_server(native_guided_rule, tmp_path_factory):
    from conftest import app_env

    cache = tmp_path_factory.mktemp("cache")
    write_hub_snapshot(cache)
    log = REPO_ROOT / "tests" / "output" / "vit_server.log"
    with serve_streamlit(
        "app.py",
        cwd=REPO_ROOT,
        log_path=log,
        env={**app_env(), "SALIENCY_CACHE": str(cache)},
    ) as base_url:
        yield base_url


@pytest.mark.parametrize("method", ["attention_rollout",
                                    pytest.param("attention_relevance", marks=pytest.mark.long)])
def test_a_hub_vit_is_explained_with_the_attention_methods(vit_server, page, method):
    open_app(page, vit_server, f"image?model=hf:{REPO}&method={method}")
    assert_no_exception(page)
    sidebar = page.locator(SIDEBAR)
    # The picked method's description is drawn under the picker.
    description = saliency_core.get_method(method).description
    expect(sidebar).to_contain_text(description[:40])
    expect(page.locator(MAIN)).to_contain_text("Explaining")
    expect(
        page.locator(MAIN).locator('[data-testid="stPlotlyChart"]').first
    ).to_be_visible(timeout=60_000)
    screenshot(page, f"vit-image-{method}")


def test_the_models_page_says_how_to_bring_a_model_by_name(vit_server, page):
    open_app(page, vit_server, "models")
    main = page.locator(MAIN)
    expect(main).to_contain_text(
        "By name: any Hugging Face image classifier or timm model"
    )
    page.get_by_placeholder(
        "hf:google/vit-base-patch16-224"
    ).scroll_into_view_if_needed()
    screenshot(page, "models-byo-by-name")
