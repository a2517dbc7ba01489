"""The allowlist's rules (addresses, domains, env over secrets) without a browser; the whole
sign-in flow is in test_browser_auth.py."""

from __future__ import annotations

from workbench.hosting.auth import (
    ALLOWLIST_ENV,
    Allowlist,
    configured_allowlist,
    user_allowed,
)


def test_addresses_and_domains_in_any_spelling():
    allow = Allowlist.parse([" Ada@Team.example ", "@partner.example", "lab.example", ""])
    assert allow.allows("ada@team.example")
    assert allow.allows("ADA@TEAM.EXAMPLE")
    assert allow.allows("grace@partner.example")
    assert allow.allows("x@lab.example")
    assert not allow.allows("bob@team.example")
    assert not allow.allows("eve@sub.partner.example")  # a subdomain is another domain
    assert not allow.allows("partner.example")
    assert not allow.allows(None)


def test_empty_list_lets_every_signed_in_user_in():
    allow = Allowlist.parse([])
    assert allow.open
    assert user_allowed({"email": "anyone@anywhere.example"}, allow)


def test_an_unverified_address_is_refused_even_when_listed():
    allow = Allowlist.parse(["ada@team.example"])
    assert user_allowed({"email": "ada@team.example", "email_verified": True}, allow)
    assert user_allowed({"email": "ada@team.example"}, allow)  # providers that omit the claim
    assert not user_allowed({"email": "ada@team.example", "email_verified": False}, allow)
    assert not user_allowed({"sub": "no-email"}, allow)


def test_environment_variable_is_read(monkeypatch):
    monkeypatch.setenv(ALLOWLIST_ENV, "ada@team.example,@partner.example")
    allow = configured_allowlist()
    assert allow.emails == {"ada@team.example"}
    assert allow.domains == {"partner.example"}
