"""Running one page under Streamlit's AppTest, shared by the app tests."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest

_ESCAPED = re.compile(r"\\(.)")


def shown(markdown: str) -> str:
    """What a reader sees of Markdown source whose user-supplied parts were escaped."""
    return _ESCAPED.sub(r"\1", markdown).replace("\u200b", "")


def run_app_page(path: str, query: dict | None = None, timeout: float = 180) -> AppTest:
    """Run the page with the given URL query parameters; fail on any exception it shows."""
    at = AppTest.from_file(path, default_timeout=timeout)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def count_engine_runs(monkeypatch, record) -> None:
    """Call ``record(model, method)`` for every model run a page starts: one-shot
    ``saliency_core.explain`` calls and each level of a progressive ``Refiner``."""
    import saliency_core

    real_explain = saliency_core.explain
    real_init = saliency_core.Refiner.__init__
    real_refine = saliency_core.Refiner.explain

    def explain(model, inputs, method, *args, **kwargs):
        record(model, method)
        return real_explain(model, inputs, method, *args, **kwargs)

    def init(self, model, *args, **kwargs):
        real_init(self, model, *args, **kwargs)
        self.counted_model = model

    def refine(self, **changes):
        out = real_refine(self, **changes)
        if out.metadata.get("passes", 0):  # a level served from kept sums runs no model
            record(self.counted_model, self.method)
        return out

    monkeypatch.setattr(saliency_core, "explain", explain)
    monkeypatch.setattr(saliency_core.Refiner, "__init__", init)
    monkeypatch.setattr(saliency_core.Refiner, "explain", refine)
