"""A real Hugging Face causal language model in chromium, fetched as a user fetches it: the
server's hub is a local HTTP mirror (HF_ENDPOINT) serving a tiny GPT-2 checkpoint the test
writes (config, safetensors, tokenizer files) as the zoo's distilgpt2; the Models page's
Fetch button downloads it into an empty cache, and the Text page's Next word mode explains a
typed prompt with it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.browser import (
    REPO_ROOT,
    assert_no_exception,
    keep_copy,
    open_app,
    screenshot,
    serve_streamlit,
    wait_for_app,
)
from support.hub_mirror import HubMirror
from support.tiny_lm import save_tiny_gpt2

from saliency_core.models import hf_lm

# About 100 s on 2 loaded cores (a server of its own, a fetch, a first load): make test-lm.
pytestmark = [pytest.mark.browser, pytest.mark.long]
MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'
ZOO_NAME = "distilgpt2"
SHOTS = Path(os.environ.get("SALIENCY_SHOTS_DIR", "/work/shots/lmpoint"))


def expect(*args, **kwargs):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def keep(path: Path) -> None:
    keep_copy(path, SHOTS)


@pytest.fixture(scope="module")
def hub_server(native_guided_rule, tmp_path_factory):
    """The app with an empty model cache and a hub mirror holding distilgpt2's repository
    (a tiny GPT-2 written by the test, beside a file the fetch must leave alone)."""
    from conftest import app_env

    folder = tmp_path_factory.mktemp("upstream")
    save_tiny_gpt2(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    files["pytorch_model.bin"] = (
        b"an older copy of the weights that must not be fetched"
    )
    cache = tmp_path_factory.mktemp("cache")
    log = REPO_ROOT / "tests" / "output" / "nextword_hub_server.log"
    with HubMirror() as mirror:
        mirror.repos[hf_lm.LANGUAGE_MODELS[ZOO_NAME].repo_id] = files
        env = {**app_env(), "SALIENCY_CACHE": str(cache), "HF_ENDPOINT": mirror.url,
               "HF_HUB_OFFLINE": "0"}  # fmt: skip
        with serve_streamlit(
            "app.py", cwd=REPO_ROOT, log_path=log, env=env
        ) as base_url:
            yield base_url, cache, mirror


def test_fetch_a_language_model_from_the_mirror_and_explain_a_prompt(hub_server, page):
    base_url, cache, mirror = hub_server
    page.set_viewport_size({"width": 1366, "height": 1100})

    # Not yet fetched: the Next word mode names it and says how to get it.
    open_app(page, base_url, f"text?mode=next&model={ZOO_NAME}")
    expect(
        page.get_by_text(f"{ZOO_NAME} is not downloaded on this server")
    ).to_be_visible()
    assert_no_exception(page)
    keep(screenshot(page, "hub-lm-not-fetched.png", full_page=True))

    open_app(page, base_url, "models")
    button = page.get_by_role("button", name=f"Fetch {ZOO_NAME} (")
    button.click()
    wait_for_app(page, timeout_ms=120_000)
    expect(page.get_by_text(f"{ZOO_NAME} is now cached.")).to_be_visible()
    assert_no_exception(page)
    keep(screenshot(page, "hub-lm-fetched.png", full_page=True))
    fetched = [p.name for p in cache.rglob("*") if p.is_file()]
    assert "model.safetensors" in fetched and "pytorch_model.bin" not in fetched
    assert any("/resolve/" in path for _method, path in mirror.requests)

    # As a new user: the Text page, the Next word switch, the fetched model, a typed prompt.
    open_app(page, base_url, "text")
    main = page.locator(MAIN)
    main.locator('[data-testid="stButtonGroup"]').get_by_text(
        "Next word", exact=True
    ).click()
    wait_for_app(page)
    box = page.locator(SIDEBAR).get_by_role("combobox", name="Model", exact=True)
    box.click()
    box.fill(ZOO_NAME)
    page.get_by_role("option", name=ZOO_NAME, exact=True).click()
    wait_for_app(page, timeout_ms=120_000)
    prompt = page.get_by_label("Prompt")
    prompt.fill("the cat sat on the")
    prompt.press("Control+Enter")
    wait_for_app(page, timeout_ms=120_000)
    expect(main.locator(".js-plotly-plot .heatmaplayer")).to_be_visible()
    expect(
        main.locator(".token-saliency").get_by_text("cat", exact=True)
    ).to_be_visible()
    assert_no_exception(page)
    assert f"model={ZOO_NAME}" in page.url and "mode=next" in page.url
    keep(screenshot(page, "hub-lm-next-word.png", full_page=True))
