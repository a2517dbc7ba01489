"""After signing in from a shared link, land on that link.

Streamlit's sign-in always comes back to the app's root ("/"): the page and the query
parameters of the link the visitor opened are lost in the OpenID Connect round trip, and that
round trip starts a new Streamlit session. So when a signed-out visitor presses "Sign in", the
page and its parameters are kept here, on the server, under a key of the browser, and the
first run after the sign-in switches to that page with those parameters.

The browser's key is a hash of the token in Streamlit's XSRF cookie: it is random per browser,
survives the round trip (Streamlit keeps the token when it renews the cookie), and sign-in
always has XSRF protection on. Nothing here is ever a URL to redirect to: a kept target is a
page of this app (checked against the navigation when it is used) and parameters that the
page reads like any link's, so no one can be sent elsewhere. Targets live in this process for
RETURN_TTL_S (a sign-in through another replica simply lands on the home page).
"""

from __future__ import annotations

import binascii
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import streamlit as st

XSRF_COOKIE = "_streamlit_xsrf"
RETURN_TTL_S = 600.0
MAX_TARGETS = 2048
MAX_PARAMS = 64
MAX_VALUE_CHARS = 5_000  # as urlstate.MAX_TEXT: longer values would be refused by the page
_CHECKED = "_signin_return_checked"


@dataclass(frozen=True)
class Target:
    url_path: str  # "" for the default page
    params: dict[str, str]
    kept_at: float


class Targets:
    """Where each browser was when it started signing in, for a while, bounded in number."""

    def __init__(self, ttl_s: float = RETURN_TTL_S, limit: int = MAX_TARGETS, clock=time.monotonic):
        self.ttl_s, self.limit, self.clock = ttl_s, limit, clock
        self._items: OrderedDict[str, Target] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, url_path: str, params: Mapping[str, str]) -> None:
        kept = {str(k): str(v) for k, v in list(params.items())[:MAX_PARAMS]
                if len(str(v)) <= MAX_VALUE_CHARS}
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = Target(url_path, kept, self.clock())
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def pop(self, key: str) -> Target | None:
        with self._lock:
            target = self._items.pop(key, None)
        if target is None or self.clock() - target.kept_at > self.ttl_s:
            return None
        return target


@st.cache_resource(show_spinner=False)
def targets() -> Targets:
    return Targets()


def xsrf_token(cookie: str | None) -> bytes | None:
    """The token inside Streamlit's XSRF cookie ("2|mask|masked|time"; the mask changes each
    time the cookie is renewed, the token does not)."""
    if not cookie:
        return None
    value = cookie.strip("\"'")
    try:
        if value.startswith("2|"):
            _, mask_hex, masked_hex, _ = value.split("|")
            mask, masked = binascii.a2b_hex(mask_hex), binascii.a2b_hex(masked_hex)
            if not mask:
                return None
            return bytes(b ^ mask[i % len(mask)] for i, b in enumerate(masked)) or None
        return binascii.a2b_hex(value) or None
    except (ValueError, binascii.Error):
        return None


def browser_key() -> str | None:
    """A stable, unguessable key of this browser; None without Streamlit's XSRF cookie."""
    try:
        token = xsrf_token(st.context.cookies.get(XSRF_COOKIE))
    except Exception:  # noqa: BLE001 - no cookies outside a served session (AppTest)
        return None
    return None if token is None else hashlib.sha256(b"signin-return:" + token).hexdigest()


def remember(url_path: str) -> None:
    """Keep this run's page and query parameters for after the sign-in (a sign-in button's
    callback calls this just before ``st.login``)."""
    params = st.query_params.to_dict()
    key = browser_key()
    if key is None or (not url_path and not params):
        return  # nowhere to return to but the home page, where the sign-in lands anyway
    targets().put(key, url_path, params)


def resume(pages: Sequence, current) -> None:
    """Once per session of a signed-in user: if this browser started signing in from a link
    and has just landed on the bare home page, switch to that link's page and parameters."""
    if st.session_state.get(_CHECKED):
        return
    st.session_state[_CHECKED] = True
    key = browser_key()
    target = targets().pop(key) if key is not None else None
    if target is None or current.url_path or st.query_params.to_dict():
        return  # not a fresh landing from the sign-in: the visitor went somewhere already
    page = next((p for p in pages if p.url_path == target.url_path), None)
    if page is None or (page is current and not target.params):
        return
    st.switch_page(page, query_params=target.params)
