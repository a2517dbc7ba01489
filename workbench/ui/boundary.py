"""The one error boundary around every page run.

A bug must never show a user a traceback (it names server paths and internals), and must
never be silently lost either. Anything a page raises that is not Streamlit's own control flow
(st.stop, st.rerun: BaseExceptions, so they pass through) is logged with its traceback under a
short reference id, and the user sees one sentence with that id to quote in a report.
``client.showErrorDetails = "none"`` in .streamlit/config.toml is the second line, for errors
raised outside a page run (widget callbacks).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import streamlit as st

LOG = logging.getLogger("saliency_workbench.errors")
if not LOG.handlers:  # Streamlit configures only its own loggers; this one goes to stderr
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    LOG.addHandler(_handler)
    LOG.propagate = False
USER_MESSAGE = ("Something went wrong on the server while showing this page (reference {ref}). "
                "The page still works: change a setting or reload it. If it happens again, "
                "report the reference; the server's log has the details.")


def new_reference() -> str:
    return secrets.token_hex(4)


def report(exc: BaseException) -> str:
    """Log ``exc`` with its traceback under a new reference; return the reference."""
    ref = new_reference()
    LOG.error("unhandled error in a page run, reference %s", ref,
              exc_info=(type(exc), exc, exc.__traceback__))
    return ref


def guarded(run: Callable[[], None]) -> None:
    """Call ``run`` (a page); show a short message with a reference instead of a traceback."""
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - the boundary: everything is logged, then shown briefly
        st.error(USER_MESSAGE.format(ref=report(exc)), icon=":material/error:")
