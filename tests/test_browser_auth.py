"""Sign-in end to end: the served app with an ``[auth]`` section pointing at a real OpenID
Connect provider (tests/support/oidc_provider.py, on Authlib's server components) on localhost, driven
in headless chromium through the whole authorization code flow; signing in from a shared link
lands on that link."""

from __future__ import annotations

import secrets

import pytest
from support.browser import (
    OUTPUT_DIR,
    REPO_ROOT,
    app_url,
    assert_no_exception,
    free_port,
    open_app,
    serve_streamlit,
    wait_for_app,
)
from support.oidc_provider import OidcProvider
from test_browser_image import shapes_png, upload

pytestmark = pytest.mark.browser

ALLOWED = "ada@team.example"
ALSO_ALLOWED = "grace@partner.example"
REFUSED = "eve@elsewhere.example"
UPLOADER = '[data-testid="stFileUploader"]'
SIGN_IN = 'button:has-text("Sign in")'


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """The app served with sign-in on (secrets in a temporary file) and an allowlist of one
    address and one domain; yields (base URL, provider)."""
    port = free_port()
    redirect_uri = f"http://127.0.0.1:{port}/oauth2callback"
    with OidcProvider("workbench", secrets.token_urlsafe(24), redirect_uri) as provider:
        secrets_file = tmp_path_factory.mktemp("auth") / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
            f'client_id = "{provider.client.client_id}"\n'
            f'client_secret = "{provider.client.client_secret}"\n'
            f'server_metadata_url = "{provider.metadata_url}"\n'
        )
        env = {
            "SALIENCY_CACHE": str(REPO_ROOT / "models_cache"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "SALIENCY_SHARE_DIR": str(OUTPUT_DIR / "share_store"),
            "SALIENCY_ALLOWED_USERS": f"{ALLOWED}, @partner.example",
        }
        with serve_streamlit("app.py", cwd=REPO_ROOT, log_path=OUTPUT_DIR / "auth_server.log",
                             env=env, port=port,
                             extra_args=["--secrets.files", str(secrets_file)]) as base_url:
            yield base_url, provider


def sign_in(page, base_url: str, email: str, path: str = "", lands: str = "**") -> None:
    """Open ``path`` signed out, sign in as ``email``; wait until the app at ``lands``."""
    open_app(page, base_url, path)
    page.locator(SIGN_IN).click()
    page.wait_for_url("**/authorize?**")
    page.fill('input[name="email"]', email)
    page.click('button[type="submit"]')
    page.wait_for_url(f"{base_url}/{lands}")
    wait_for_app(page)


def assert_no_app(page) -> None:
    """No uploader, no input picker, no picture, no page names: nothing of the app."""
    assert page.locator(UPLOADER).count() == 0
    assert page.get_by_text("Source", exact=True).count() == 0
    assert page.locator('[data-testid="stImage"], [data-testid="stPlotlyChart"]').count() == 0
    assert page.locator('[data-testid="stTopNavLink"]').count() == 0, "page names are shown"
    assert_no_exception(page)


def assert_only_sign_in(page) -> None:
    page.locator(SIGN_IN).wait_for()
    assert_no_app(page)


def test_signed_out_sees_only_sign_in_even_from_a_shared_link(auth_server, page):
    base_url, _ = auth_server
    open_app(page, base_url)
    assert_only_sign_in(page)
    # A shared link straight to a result and the model page both stay behind the sign-in.
    open_app(page, base_url, "image?model=shapes-cnn&input=sample%3Acircle&method=gradient")
    assert_only_sign_in(page)
    open_app(page, base_url, "models")
    assert_only_sign_in(page)


def test_allowed_user_signs_in_uses_the_app_and_signs_out(auth_server, page):
    base_url, provider = auth_server
    sign_in(page, base_url, ALLOWED)
    assert ALLOWED in provider.signed_in
    assert page.locator('[data-testid="stTopNavLink"]').count() > 0
    page.get_by_text(f"Signed in as {ALLOWED}").wait_for()

    page.goto(app_url(base_url, "image?model=shapes-cnn&method=gradient"))
    wait_for_app(page)
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    upload(page, "signed-in.png", shapes_png())
    page.get_by_text("Input as the model sees it · signed-in.png (uploaded)").wait_for()
    assert_no_exception(page)

    page.locator('button:has-text("Sign out")').click()
    page.wait_for_url(f"{base_url}/**")
    wait_for_app(page)
    assert_only_sign_in(page)
    # The identity cookie is gone: a fresh visit is signed out too.
    open_app(page, base_url, "image")
    assert_only_sign_in(page)


def test_a_whole_domain_can_be_allowed(auth_server, page):
    base_url, _ = auth_server
    sign_in(page, base_url, ALSO_ALLOWED)
    page.get_by_text(f"Signed in as {ALSO_ALLOWED}").wait_for()
    assert_no_exception(page)


def test_user_not_on_the_allowlist_is_refused(auth_server, page):
    base_url, _ = auth_server
    sign_in(page, base_url, REFUSED)
    page.get_by_text("Not allowed").first.wait_for()
    assert REFUSED in page.locator('[data-testid="stMain"]').inner_text()
    open_app(page, base_url, "image?model=shapes-cnn&method=gradient")
    page.get_by_text("Not allowed").first.wait_for()
    assert_no_app(page)


def test_signing_in_from_a_shared_link_lands_on_that_link(auth_server, page):
    from urllib.parse import parse_qs, urlparse

    base_url, provider = auth_server
    # The provider's redirect ends on the home page; the app goes on to the link from there.
    sign_in(page, base_url, ALLOWED, "image?model=shapes-cnn&input=shapes%3A3&method=gradient",
            lands="image?**")
    assert ALLOWED in provider.signed_in
    query = parse_qs(urlparse(page.url).query)
    assert query["model"] == ["shapes-cnn"] and query["method"] == ["gradient"]
    assert query["input"] == ["shapes:3"]
    # The result shown is the link's: its method's map of its input.
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("Vanilla gradient · ").wait_for()
    main.get_by_text("Input as the model sees it · Shapes #3").wait_for()
    page.get_by_text(f"Signed in as {ALLOWED}").wait_for()
    assert_no_exception(page)
    # Only that sign-in returns there: a later visit to the home page stays on it.
    open_app(page, base_url)
    assert urlparse(page.url).path in ("", "/")
    assert_no_exception(page)
