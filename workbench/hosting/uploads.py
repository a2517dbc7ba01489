"""Bring-your-own models belong to the browser session that uploaded them.

Each session gets a random owner token the first time it needs one. The library's registry
lists a session's uploads to that session alone, refuses a name another session uses, and caps
how many uploaded models stay resident. When Streamlit drops a session's state (the tab closed
and the disconnected-session grace time passed), the token's holder is garbage collected and
its finaliser removes the session's models and their weights.
"""

from __future__ import annotations

import secrets
import weakref

import streamlit as st

from saliency_core.models import registry

OWNER_KEY = "_uploads.owner"


class OwnerToken:
    """Lives in one session's state; its finaliser drops the session's uploaded models."""

    def __init__(self):
        self.value = secrets.token_hex(12)
        weakref.finalize(self, registry.drop_owner, self.value)


def session_owner() -> str:
    holder = st.session_state.get(OWNER_KEY)
    if not isinstance(holder, OwnerToken):
        holder = st.session_state[OWNER_KEY] = OwnerToken()
    return holder.value


def my_uploads() -> list[str]:
    return registry.owned_names(session_owner())


def remove_my_uploads() -> None:
    registry.drop_owner(session_owner())
