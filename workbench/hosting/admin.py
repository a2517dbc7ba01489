"""Who may do what only an administrator should: fetching model weights (downloads of up to
hundreds of megabytes into the server's cache).

- Sign-in configured (an ``[auth]`` section in secrets.toml, so ``st.user`` has
  ``is_logged_in``): an administrator is a signed-in user whose e-mail is in the allowlist,
  ``SALIENCY_ADMINS`` (comma-separated e-mails) or ``admins`` in secrets.toml.
- No sign-in: the app is taken to run locally for one person, who is the administrator,
  unless ``SALIENCY_HOSTED=1`` says it is hosted; then nobody is (fetch on the server with
  ``python -m saliency_core fetch``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import streamlit as st

ADMINS_ENV = "SALIENCY_ADMINS"
HOSTED_ENV = "SALIENCY_HOSTED"


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def hosted() -> bool:
    return _truthy(os.environ.get(HOSTED_ENV))


def admin_emails() -> set[str]:
    listed = [e for e in os.environ.get(ADMINS_ENV, "").split(",")]
    try:
        from_secrets = st.secrets.get("admins", [])
    except Exception:  # noqa: BLE001 - no or unreadable secrets.toml: no admins from there
        from_secrets = []
    if isinstance(from_secrets, str):
        from_secrets = from_secrets.split(",")
    return {e.strip().lower() for e in [*listed, *from_secrets] if e and e.strip()}


def is_admin_user(user: Mapping, admins: Iterable[str], is_hosted: bool) -> bool:
    """The rule above, on ``st.user``'s mapping (``is_logged_in`` present iff sign-in is on)."""
    if "is_logged_in" not in user:
        return not is_hosted
    if not user.get("is_logged_in"):
        return False
    email = str(user.get("email") or "").strip().lower()
    return bool(email) and email in {a.strip().lower() for a in admins}


def is_admin() -> bool:
    return is_admin_user(st.user.to_dict(), admin_emails(), hosted())


def why_not() -> str:
    """One sentence for a visitor who is not an administrator."""
    if "is_logged_in" in st.user.to_dict():
        if not st.user.is_logged_in:
            return "Fetching weights is for administrators: sign in first."
        return ("Fetching weights is for administrators; your account is not one. Ask the "
                "operator to fetch the model (python -m saliency_core fetch NAME).")
    return ("This server is hosted without sign-in, so fetching from the page is off; the "
            "operator fetches models on the server (python -m saliency_core fetch NAME).")
