"""A progress bar with a Stop button for long engine runs.

Streamlit interrupts a running script as soon as it next draws something after the user has
touched a widget; the engine calls ``progress`` after every chunk of model passes, and each
update redraws the bar, so a click on Stop ends the run within one chunk. Each update is also
where a long run lets other sessions' queued work go first (scheduler.yield_turn). The click's callback
records which computation was stopped, so the rerun that follows does not simply start it again.
"""

from __future__ import annotations

import hashlib
import time
from typing import Self

import streamlit as st

from workbench.jobs.admission import OverBudget
from workbench.jobs.progressive import level_note
from workbench.jobs.scheduler import yield_turn
from workbench.ui import plaintext

STOPPED_KEY = "_stopped_computation"
# Redrawing more often than this only floods the browser with messages.
MIN_UPDATE_S = 0.1


def _mark_stopped(computation: str) -> None:
    st.session_state[STOPPED_KEY] = computation


def was_stopped(computation: str) -> bool:
    return st.session_state.get(STOPPED_KEY) == computation


def clear_stopped() -> None:
    st.session_state.pop(STOPPED_KEY, None)


def stopped_notice(computation: str, key: str) -> None:
    """What the page shows instead of a result the user stopped: a way to start it again."""
    st.warning("Stopped before it finished. Change a setting, or run it again.")
    st.button("Run again", key=key, on_click=clear_stopped, type="primary")


def _requests(n: int) -> str:
    return f"{n} request{'s' * (n > 1)}"


class Progress:
    """Context manager: shows a bar and a Stop button while the block runs, then removes them.

    Call the instance as ``progress(done, total)``; ``done``/``total`` count model passes.
    """

    def __init__(self, label: str, computation: str, key: str, unit: str = "model passes",
                 ask_here: bool = False, names: str | None = None):
        self.label = label
        # What the Run anyway button names, where several requests ask on one page (Compare).
        self.names = names
        # Over the budget, the question (its message and Run anyway) takes the bar's place:
        # the next run's bar then replaces it, so neither lingers beside a running bar.
        self.ask_here = ask_here
        self.computation = computation
        self.key = key
        self.unit = unit  # what done/total count (the sanity checks count maps)
        self._text = ""
        self._fraction = 0.0
        self._last = 0.0
        self._start = 0.0
        self.stage = ""

    @property
    def _slot(self) -> str:
        """A CSS-safe name for this bar's question block (keys become class names)."""
        return hashlib.blake2s(self.key.encode(), digest_size=5).hexdigest()

    def __enter__(self) -> Self:
        self._holder = st.empty()
        self._start = time.perf_counter()
        with self._holder.container():
            self._bar = st.progress(0.0, text=f"{self.label}: starting...")
            st.button("Stop", key=self.key, on_click=_mark_stopped, args=(self.computation,),
                      help="Stop this computation; the page keeps your settings.")
        return self

    def relabel(self, stage: str) -> None:
        """Name the stage now running (a level of a progressive run) in the bar's text."""
        self.stage = stage
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        self._start += yield_turn(self.paused)
        now = time.perf_counter()
        if done < total and now - self._last < MIN_UPDATE_S:
            return
        self._last = now
        fraction = done / total if total else 1.0
        label = f"{self.label} ({self.stage})" if self.stage else self.label
        text = f"{label}: {done} of {total} {self.unit} done, {total - done} to go"
        elapsed = now - self._start
        if 0 < done < total and elapsed > 1.0:
            text += f" (about {elapsed / done * (total - done):.0f} s left)"
        self._fraction, self._text = min(1.0, max(0.0, fraction)), text
        self._bar.progress(self._fraction, text=text)

    def pulse(self, _done: int = 0, _total: int = 0) -> None:
        """Redraw the bar as it is: work whose steps are long (one map of many model passes)
        calls this between passes, and each redraw is where Streamlit can stop the run."""
        self._start += yield_turn(self.paused)
        if self._due() is not None:
            self._bar.progress(self._fraction, text=self._text or f"{self.label}: running...")

    def waiting(self, waiting) -> None:
        """While queued behind other sessions' work (a scheduler.Waiting): where, how long."""
        now = self._due()
        if now is None:
            return
        ahead = waiting.position - 1
        text = (f"{self.label}: waiting for the model, "
                + ("next in line" if ahead == 0 else f"{_requests(ahead)} ahead")
                + f" (position {waiting.position} of {waiting.queued} in the queue), "
                f"about {waiting.wait_s:.0f} s to wait")
        self._bar.progress(0.0, text=text)
        self._start = now  # the time left after it starts counts from the start

    def paused(self, waiting) -> None:
        """While this run has stepped aside for other sessions' work (a scheduler.Waiting)."""
        if self._due() is None:
            return
        ahead = waiting.position - 1
        text = (f"{self.label}: paused so that other users' work can run"
                + (f" ({_requests(ahead)} first)" if ahead else "")
                + f", {self._fraction:.0%} done; it goes on from there")
        self._bar.progress(self._fraction, text=text)

    def _due(self) -> float | None:
        """The time now if the bar may be redrawn (at most every MIN_UPDATE_S), else None."""
        now = time.perf_counter()
        if now - self._last < MIN_UPDATE_S:
            return None
        self._last = now
        return now

    def __exit__(self, exc_type, exc, _traceback) -> None:
        self._holder.empty()
        if isinstance(exc, OverBudget):
            # The question sits in a block of its own inside the holder: the confirmed run
            # puts its bar where that block was, and the browser drops the block with its
            # button. Placed straight in the holder, the clicked button stayed on screen
            # (faded) beside the running bar until the run ended.
            with self._holder.container():
                with st.container(key=f"budget-question-{self._slot}"):
                    if self.ask_here:
                        plaintext.warning(exc)
                    run_anyway_button(exc, self.names)
                # The browser keeps a replaced block's children that this run drew and nothing
                # overwrote: without this, the bar's Stop stayed under the question with
                # nothing running.
                st.empty()


def run_anyway_button(refusal: OverBudget, names: str | None = None) -> None:
    """What an over-budget request leaves on the page: a click confirms it, and the rerun
    that follows runs it. ``names``: which request it runs, where several may ask."""
    which = f": {names}" if names else ""
    st.button(f"Run anyway{which} ({refusal.estimate.text(spread=False)})",
              key=f"budget.{hash(refusal.key)}", on_click=refusal.confirm,
              args=(st.session_state,), type="primary",
              help="Runs these settings although they are over the per-request budget.")


def coarse_result(refusal: Exception) -> tuple | None:
    """(result, note) of the coarse level an over-budget progressive run showed before asking
    (or before a refusal), or None."""
    partial = getattr(refusal, "partial", None)
    if partial is None:
        return None
    result, level = partial
    return result, (f"Coarse result: {level_note(result, level)}; the rest waits for the "
                    "question above." if isinstance(refusal, OverBudget) else
                    f"Coarse result: {level_note(result, level)}; the full run was refused.")


def preview_row(area, caption: str, images: list[tuple]) -> None:
    """Draw (PNG bytes, caption) pairs in one row of ``area`` (an st.empty), replacing what it
    showed: the coarse maps of a run still in progress."""
    with area.container():
        st.caption(caption)
        columns = st.columns(max(3, len(images)))
        for column, (pixels, label) in zip(columns, images):
            column.image(pixels, width="stretch", caption=label)
