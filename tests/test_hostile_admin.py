"""Fetching weights from the Models page is for administrators when the app is hosted."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest
from support.browser import REPO_ROOT

import saliency_core.models as sc_models
from workbench.hosting.admin import ADMINS_ENV, HOSTED_ENV, is_admin_user

ADMINS = {"root@example.org"}


@pytest.mark.parametrize(("user", "hosted", "expected"), [
    ({}, False, True),  # sign-in off, local: the one user is the administrator
    ({}, True, False),  # sign-in off, hosted: nobody fetches from the page
    ({"is_logged_in": False}, False, False),  # sign-in on, not signed in
    ({"is_logged_in": True, "email": "guest@example.org"}, False, False),
    ({"is_logged_in": True, "email": "Root@Example.org"}, True, True),
    ({"is_logged_in": True}, True, False),  # no e-mail claim
    ({"is_logged_in": True, "email": ""}, False, False),
])
def test_admin_rule(user, hosted, expected):
    assert is_admin_user(user, ADMINS, hosted) is expected


def _zoo_missing() -> list[str]:
    return [i.name for i in sc_models.available_models() if i.source == "zoo" and not i.present]


def test_models_page_hides_fetch_buttons_when_hosted(monkeypatch):
    if not _zoo_missing():
        pytest.skip("every zoo model is cached here")
    monkeypatch.setenv(HOSTED_ENV, "1")
    monkeypatch.setenv(ADMINS_ENV, "root@example.org")
    at = AppTest.from_file(str(REPO_ROOT / "pages" / "models.py"), default_timeout=120).run()
    assert not at.exception
    assert not [b for b in at.button if b.key and b.key.startswith("models.fetch.")]
    assert any("hosted without sign-in" in i.value for i in at.info)


def test_models_page_offers_fetch_locally(monkeypatch):
    missing = _zoo_missing()
    if not missing:
        pytest.skip("every zoo model is cached here")
    monkeypatch.delenv(HOSTED_ENV, raising=False)
    at = AppTest.from_file(str(REPO_ROOT / "pages" / "models.py"), default_timeout=120).run()
    keys = {b.key for b in at.button}
    assert f"models.fetch.{missing[0]}" in keys
