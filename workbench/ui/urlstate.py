"""Page settings in the URL: reading them back from a (possibly hand-edited) link, and writing
the current ones out, so that a copied link reproduces a view.

Reading never fails: each value that is missing, malformed or out of range falls back to its
default, and the reader collects one plain sentence per problem for the page to show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from saliency_core.errors import SaliencyError
from saliency_core.methods.specs import Param

MAX_TEXT = 5_000  # characters of free text accepted from a link


def _plain(value) -> str:
    # st.query_params yields the last value of a repeated key; plain dicts may hold lists.
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return str(value)


class UrlReader:
    """Typed access to query parameters, with a problem noted for each value not taken."""

    def __init__(self, params: Mapping[str, Any]):
        self.params = {str(k): _plain(v) for k, v in params.items()}
        self.problems: list[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self.params

    def has_any(self, keys: Sequence[str]) -> bool:
        return any(k in self.params for k in keys)

    def _reject(self, key: str, raw: str, why: str, default) -> Any:
        shown = raw if len(raw) <= 60 else raw[:57] + "..."
        self.problems.append(
            f"The link's setting {key}={shown!r} was ignored ({why}); using {default!r}."
        )
        return default

    def choice(self, key: str, options: Sequence, default):
        if key not in self.params:
            return default
        raw = self.params[key]
        for option in options:
            if str(option) == raw:
                return option
        listed = ", ".join(map(str, list(options)[:8])) + (", ..." if len(options) > 8 else "")
        return self._reject(key, raw, f"expected one of {listed}", default)

    def number(self, key: str, default, lo=None, hi=None, integer: bool = False):
        if key not in self.params:
            return default
        raw = self.params[key]
        try:
            # float() also reads non-ASCII digits ("٣"); a link's numbers are plain ASCII.
            if not raw.isascii():
                raise ValueError
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            if integer:
                if value != int(value):
                    raise ValueError
                value = int(value)
        except (ValueError, OverflowError):
            return self._reject(key, raw, "not a number" if not integer else "not an integer",
                                default)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return self._reject(key, raw, f"allowed range is {lo} to {hi}", default)
        return value

    def flag(self, key: str, default: bool) -> bool:
        if key not in self.params:
            return default
        raw = self.params[key].lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        return self._reject(key, self.params[key], "expected true or false", default)

    def text(self, key: str, default: str, max_chars: int = MAX_TEXT) -> str:
        if key not in self.params:
            return default
        raw = self.params[key]
        if len(raw) > max_chars:
            return self._reject(key, raw, f"longer than {max_chars} characters", default)
        return raw

    def spec_param(self, key: str, param: Param, task: str, default=None,
                   layers: Sequence[str] | None = None):
        """A method hyperparameter, parsed by its spec's type and checked by its validator."""
        default = param.default if default is None else default
        if key not in self.params:
            return default
        raw = self.params[key]
        if param.type == "int":
            return self.number(key, default, param.min, param.max, integer=True)
        if param.type == "float":
            return self.number(key, default, param.min, param.max)
        if param.type == "bool":
            return self.flag(key, default)
        if param.type == "layer":
            if raw == "":
                return None
            if layers is not None and raw not in layers:
                return self._reject(key, raw, "no such layer in this model", default)
            return raw
        try:
            return param.validate(raw, task)
        except SaliencyError as exc:
            return self._reject(key, raw, str(exc), default)


def encode(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings -> query parameters (strings); None values are left out."""
    out = {}
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, float):
            out[key] = f"{value:.6g}"
        else:
            out[key] = str(value)
    return out
