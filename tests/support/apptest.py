"""Running one page under Streamlit's AppTest, shared by the app tests."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

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


class CountingEngine:
    """The app's engine with every model run a page starts reported to ``record(model,
    method)``: one-shot ``explain`` / ``attribute_text`` calls and each level of a kept
    refiner that ran the model (a level served from kept sums runs none). The cost model's
    calibration runs are no page's request and are left out."""

    def __init__(self, inner, record):
        self.inner = inner
        self.record = record

    def _count(self, model, method) -> None:
        from workbench.jobs import engine

        if not engine.measuring_now():
            self.record(model, method)

    def attribute(self, model, inputs, method, target="predicted", **params):
        self._count(model, method)
        return self.inner.attribute(model, inputs, method, target=target, **params)

    def explain(self, model, inputs, method, target="predicted", **params):
        self._count(model, method)
        return self.inner.explain(model, inputs, method, target=target, **params)

    def attribute_text(self, model, text, method, target="predicted", **params):
        self._count(model, method)
        return self.inner.attribute_text(model, text, method, target=target, **params)

    def refine(self, model, inputs, method, counts, target="predicted", on_level=None, **params):
        self._count(model, method)
        return self.inner.refine(model, inputs, method, counts, target=target,
                                 on_level=on_level, **params)

    def call(self, function, *args, **kwargs):
        return self.inner.call(function, *args, **kwargs)

    def refiner(self, model, inputs, method, target="predicted"):
        return _CountedRefiner(self.inner.refiner(model, inputs, method, target=target),
                               model, self.record)

    def text_refiner(self, model, text, method, target="predicted", max_length=None):
        return _CountedRefiner(self.inner.text_refiner(model, text, method, target,
                                                       max_length=max_length),
                               model, self.record)


class _CountedRefiner:
    def __init__(self, inner, model, record):
        self.inner = inner
        self.model = model
        self.record = record

    def explain(self, **changes):
        out = self.inner.explain(**changes)
        if out.metadata.get("passes", 0):
            self.record(self.model, self.inner.method)
        return out


@contextlib.contextmanager
def engine_in_place(replacement) -> Iterator:
    """The app's engine replaced by ``replacement`` (workbench.jobs.engine.use) while the block
    runs."""
    from workbench.jobs import engine

    previous = engine.use(replacement)
    try:
        yield replacement
    finally:
        engine.use(previous)


def count_engine_runs(record):
    """A block in which every model run a page starts is reported to ``record(model, method)``
    (a CountingEngine around the in-process engine)."""
    from workbench.jobs import engine

    return engine_in_place(CountingEngine(engine.local(), record))


def share_link(at: AppTest) -> str:
    """The link the page's "Share this view" button copies."""
    import html

    for element in at.get("html"):
        found = re.search(r'class="sw-share-link" data-link="([^"]*)"', element.proto.body)
        if found:
            return html.unescape(found.group(1))
    raise AssertionError("no share button on the page")
