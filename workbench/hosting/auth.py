"""Sign-in for a hosted workbench: Streamlit's OpenID Connect login, plus an allowlist.

Sign-in is on exactly when the secrets (``.streamlit/secrets.toml`` or ``--secrets.files``)
have an ``[auth]`` section, so ``make run`` on a laptop stays one command. When it is on, app.py
calls ``gate()`` before any page runs: a visitor who is not signed in sees only a sign-in
button, and one whose address is not allowed sees a "not allowed" page, so neither reaches a
model, an uploader or a shared link's content.

The allowlist comes from ``SALIENCY_ALLOWED_USERS`` (comma-separated) or, when that is unset,
``allowed_users`` (a list) under ``[workbench]`` in the secrets. Entries are e-mail addresses
(``ada@example.org``) or whole domains (``example.org`` or ``@example.org``). An empty list lets
every signed-in user in: then the identity provider (a company tenant, say) is the boundary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import streamlit as st

from workbench.hosting import signin_return

ALLOWLIST_ENV = "SALIENCY_ALLOWED_USERS"


@dataclass(frozen=True)
class Allowlist:
    emails: frozenset[str]
    domains: frozenset[str]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        emails, domains = set(), set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry.startswith("@"):
                domains.add(entry[1:])
            elif "@" in entry:
                emails.add(entry)
            else:
                domains.add(entry)
        return cls(frozenset(emails), frozenset(domains))

    @property
    def open(self) -> bool:
        return not self.emails and not self.domains

    def allows(self, email: str | None) -> bool:
        if self.open:
            return True
        if not email or "@" not in email:
            return False
        email = email.strip().lower()
        return email in self.emails or email.rsplit("@", 1)[1] in self.domains


def auth_configured() -> bool:
    """Whether the secrets configure an identity provider (then sign-in is required)."""
    try:
        return st.secrets.load_if_toml_exists() and "auth" in st.secrets
    except FileNotFoundError:
        return False


def configured_allowlist() -> Allowlist:
    raw = os.environ.get(ALLOWLIST_ENV)
    if raw is not None:
        return Allowlist.parse(raw.split(","))
    section = st.secrets.get("workbench", {}) if st.secrets.load_if_toml_exists() else {}
    entries = section.get("allowed_users", []) if isinstance(section, Mapping) else []
    if isinstance(entries, str):
        entries = entries.split(",")
    return Allowlist.parse(entries)


def _claims() -> Mapping:
    if not auth_configured():
        return {}
    claims = st.user.to_dict()
    return claims if claims.get("is_logged_in") else {}


def current_user() -> str | None:
    """The signed-in user's e-mail (or subject) for logs and fairness; None when signed out
    or when sign-in is off."""
    claims = _claims()
    return claims.get("email") or claims.get("sub") or None


def user_allowed(claims: Mapping, allowlist: Allowlist) -> bool:
    # An address the provider says it has not verified could be anyone's.
    if claims.get("email_verified") is False:
        return False
    return allowlist.allows(claims.get("email"))


def providers() -> list[str | None]:
    """The configured identity providers: None for the unnamed one (keys directly under
    [auth]), then each named [auth.<name>] section."""
    section = st.secrets.get("auth", {})
    named = [key for key, value in section.items()
             if isinstance(value, Mapping) and "client_id" in value]
    return ([None] if "client_id" in section else []) + named


def _sign_in(provider: str | None, url_path: str) -> None:
    # The round trip through the provider ends on the home page: keep the link to return to.
    signin_return.remember(url_path)
    st.login(provider)


def _sign_in_page(url_path: str) -> None:
    st.title("Saliency workbench")
    st.write("This workbench is for signed-in users of this team. Sign in with your "
             "organisation's account to continue.")
    choices = providers() or [None]
    for provider in choices:
        label = "Sign in" if provider is None or len(choices) == 1 else f"Sign in with {provider}"
        st.button(label, type="primary", icon=":material/login:", on_click=_sign_in,
                  args=(provider, url_path), key=f"auth.sign_in.{provider}")


def _not_allowed_page(email: str | None) -> None:
    st.title("Not allowed")
    st.error(f"You are signed in as **{email or 'an account without an e-mail address'}**, "
             "which is not on this workbench's list of allowed users. Ask the person who runs "
             "it to add your address or your domain, or sign out and use another account.")
    st.button("Sign out", icon=":material/logout:", on_click=st.logout, key="auth.sign_out")


@dataclass(frozen=True)
class Access:
    allowed: bool
    user: str | None  # e-mail (or subject) when signed in; None when signed out or auth is off
    reason: str = ""  # "signed_out" or "not_allowed" when refused


def access() -> Access:
    """Who may use the app in this run. Draws nothing, so app.py can hide the navigation
    before it shows the refusal."""
    if not auth_configured():
        return Access(True, None)
    claims = _claims()
    if not claims:
        return Access(False, None, "signed_out")
    if not user_allowed(claims, configured_allowlist()):
        return Access(False, current_user(), "not_allowed")
    return Access(True, current_user())


def refuse(decision: Access, url_path: str = "") -> None:
    """The sign-in or the "not allowed" page instead of any page of the app (``url_path``: the
    page the visitor asked for, to return to after signing in); stops the run."""
    if decision.reason == "not_allowed":
        _not_allowed_page(_claims().get("email"))
    else:
        _sign_in_page(url_path)
    st.stop()


def account_menu(user: str | None) -> None:
    """Who is signed in, and the way out (only when sign-in is on)."""
    if user is None:
        return
    with st.sidebar:
        st.caption(f"Signed in as {user}")
        st.button("Sign out", icon=":material/logout:", on_click=st.logout,
                  key="auth.account_sign_out")
