"""Two app replicas (two streamlit server processes) sharing one S3 bucket, as behind a load
balancer: a link made on one opens on the other with the same uploaded input and result."""

from __future__ import annotations

import contextlib

import pytest
from support.browser import (
    OUTPUT_DIR,
    REPO_ROOT,
    assert_no_exception,
    open_app,
    serve_streamlit,
)
from support.s3server import s3_server
from test_browser_image import panels, shapes_png, share_link, upload

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """(first base URL, second base URL), each with its own local folders, so that only the
    bucket can carry an upload or a result from one to the other."""
    with s3_server(prefix="replicas") as s3, contextlib.ExitStack() as stack:
        urls = []
        for name in ("a", "b"):
            local = tmp_path_factory.mktemp(f"replica-{name}")
            env = {**s3, "SALIENCY_CACHE": str(REPO_ROOT / "models_cache"),
                   "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "SALIENCY_SHARE_DIR": str(local / "share_store")}
            urls.append(stack.enter_context(serve_streamlit(
                "app.py", cwd=REPO_ROOT, log_path=OUTPUT_DIR / f"replica_{name}.log", env=env)))
        yield tuple(urls)


def alerts(page) -> list[str]:
    return page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()


def media_names(page) -> list[str]:
    """Each panel's media file name (its content hash), or the whole data: URI of a picture
    sent inline (the overlay): equal either way means identical pixels on both replicas."""
    return [src if src.startswith("data:") else src.rsplit("/", 1)[-1] for src in panels(page)]


def test_a_link_made_on_one_replica_opens_on_the_other(replicas, page, browser):
    first, second = replicas
    # The small bundled CNN and a cheap method: this test is about where state lives.
    open_app(page, first, "image?model=shapes-cnn&method=gradcam&input=shapes:0")
    upload(page, "replica-shape.png", shapes_png(5))
    assert_no_exception(page)
    shown = media_names(page)
    notices = alerts(page)
    timing = page.get_by_text("model passes").inner_text()
    link = share_link(page)
    assert link.startswith(first) and "input=upload%3A" in link and "model=shapes-cnn" in link

    colleague = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        other = colleague.new_page()
        open_app(other, second, link[len(first):])
        assert_no_exception(other)
        # Equal names (content hashes, or the inline overlay itself): identical input and
        # overlay pixels.
        assert media_names(other) == shown
        # The run's own timing line came along: the second replica read the first one's result
        # from the bucket instead of running the model again.
        assert other.get_by_text("model passes").inner_text() == timing
        # The same notices as on the first replica (the model's note about inputs it does not
        # know), and no "this server does not have the image" or any error.
        assert alerts(other) == notices
        assert other.locator('[data-testid="stAlertContentError"]').count() == 0
    finally:
        colleague.close()
