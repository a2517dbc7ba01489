"""Bring-your-own models belong to the browser session that uploaded them.

Each session gets a random owner token the first time it needs one. The library's registry
lists a session's uploads to that session alone, refuses a name another session uses, and caps
how many uploaded models stay resident. When Streamlit drops a session's state (the tab closed
and the disconnected-session grace time passed), the token's holder is garbage collected and
its finaliser removes the session's models and their weights.

Upload sizes: Streamlit's server enforces one cap on every file, ``server.maxUploadSize``; a
per-uploader limit is checked by the browser alone. So the largest uploader, the weights', takes
the server's cap as its limit (the two can never disagree), and the smaller ones are checked again
here on the server, for a client that skips the browser.
"""

from __future__ import annotations

import os
import secrets
import weakref

import streamlit as st
from streamlit import config

from saliency_core.errors import SaliencyError
from saliency_core.models import registry

OWNER_KEY = "_uploads.owner"
IMAGE_LIMIT_ENV = "SALIENCY_MAX_IMAGE_MB"
DEFAULT_IMAGE_MB = 25  # roomy for photographs; every image is scaled to 2 megapixels anyway
# 100,000 class names of 200 characters would be 20 MB; real label files are kilobytes.
LABELS_MB = 2


def weights_limit_mb() -> int:
    """The largest weights file the Models page takes: the server's cap on any one upload."""
    return int(config.get_option("server.maxUploadSize"))


def image_limit_mb() -> int:
    """The images' own limit (SALIENCY_MAX_IMAGE_MB, 25 unless set), never above the server's
    cap: the browser would send what the server then refuses with a bare HTTP error."""
    try:
        wanted = max(1, int(os.environ.get(IMAGE_LIMIT_ENV, DEFAULT_IMAGE_MB)))
    except ValueError:
        wanted = DEFAULT_IMAGE_MB
    return min(wanted, weights_limit_mb())


def check_size(data: bytes, limit_mb: int, what: str) -> None:
    """Refuse ``data`` over ``limit_mb`` (the browser's check, again on the server)."""
    if len(data) > limit_mb * 2**20:
        raise SaliencyError(f"The {what} is {len(data) / 2**20:.1f} MB; at most {limit_mb} MB "
                            "is accepted.")


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
