"""Widgets generated from method specs, and the small helpers that keep widget state, share
links and defaults consistent.

Every widget is keyed and its value lives in st.session_state; values from a link are put there
before the widget is drawn (never also passed as a default, which Streamlit rejects).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from saliency_core import get_method
from saliency_core.methods.specs import MethodSpec, Param
from workbench.ui.urlstate import UrlReader

# Sliders for ranges a hand can cover; a number box for anything wider (seeds).
SLIDER_SPAN = 1024


def ensure(key: str, value: Any) -> None:
    """Give a widget its stored value, or ``value`` the first time.

    The value is written back on every run, not only the first: a widget left out of one run
    (say, while no image is chosen) keeps its value on the server, but when it reappears the
    browser only shows that value if it was set through session state in that run.
    """
    st.session_state[key] = st.session_state.get(key, value)


def select(label: str, options: Sequence, key: str, default, widget=st.selectbox,
           **kwargs):
    """A selectbox (or radio, ...) whose stored value is reset when it is no longer offered."""
    options = list(options)
    current = st.session_state.get(key)
    if current not in options:
        current = default if default in options else options[0]
    st.session_state[key] = current
    return widget(label, options, key=key, **kwargs)


def methods_multiselect(label: str, methods: dict[str, MethodSpec], key: str,
                        default: Sequence[str], usable: Sequence[str], model: str,
                        **kwargs) -> tuple[list[str], list[str]]:
    """A multiselect offering only the ``usable`` methods (those ``model`` can run).

    ``default`` may name methods for every kind of model: those this one cannot run are left
    out. Chosen methods the model cannot run (from a link, or kept from another model) are
    dropped from the stored choice rather than shown as failures; after a switch of model the
    defaults this one can run join what is left, so a switch from a CNN to a vision transformer
    trades Guided Backprop for the attention methods, and nothing left means the defaults.
    Returns (chosen, dropped), so the page can say in one line what went."""
    offered = [name for name in methods if name in usable]
    stored = list(st.session_state.get(key, default))
    kept = [name for name in stored if name in offered]
    dropped = [name for name in stored if name not in offered]
    switched = st.session_state.get(f"{key}.model", model) != model
    st.session_state[f"{key}.model"] = model
    if dropped and (switched or not kept):
        kept += [name for name in default if name in offered and name not in kept]
    # Defaults that never ran anywhere need no word; a choice that went does.
    dropped = [name for name in dropped if name not in default or key in st.session_state]
    st.session_state[key] = kept
    chosen = st.multiselect(label, offered, key=key,
                            format_func=lambda n: methods[n].label, **kwargs)
    return chosen, dropped


def param_key(prefix: str, method: str, name: str) -> str:
    return f"{prefix}.m.{method}.{name}"


def _layer_label(layers: dict[str, tuple], default_layer: str | None) -> Callable[[str], str]:
    def fmt(path: str) -> str:
        if path == "":
            return f"default ({default_layer})" if default_layer else "default (automatic)"
        shape = layers.get(path)
        dims = " x ".join(str(d) for d in shape[1:]) if shape else "?"
        return f"{path}  [{dims}]"

    return fmt


def _param_widget(param: Param, key: str, task: str, layers: dict | None,
                  default_layer: str | None):
    label = param.label or param.name
    if param.type == "int":
        ensure(key, int(param.default))
        lo, hi = int(param.min if param.min is not None else 0), int(param.max or 2**31 - 1)
        if hi - lo <= SLIDER_SPAN:
            return st.slider(label, lo, hi, step=int(param.step or 1), key=key, help=param.help)
        return st.number_input(label, lo, hi, step=int(param.step or 1), key=key,
                               help=param.help)
    if param.type == "float":
        ensure(key, float(param.default))
        return st.slider(label, float(param.min), float(param.max), step=float(param.step or 0.01),
                         key=key, help=param.help)
    if param.type == "bool":
        ensure(key, bool(param.default))
        return st.toggle(label, key=key, help=param.help)
    if param.type in ("choice", "method"):
        choices = param.choices_for(task)
        wanted = param.default_for(task)
        default = wanted if wanted in choices else choices[0]
        if param.type == "method":
            return select(label, choices, key, default, help=param.help,
                          format_func=lambda name: get_method(name).label)
        return select(label, choices, key, default, help=param.help)
    if param.type == "layer":
        layers = layers or {}
        value = select(label, ["", *layers], key, "", help=param.help,
                       format_func=_layer_label(layers, default_layer))
        return value or None
    raise ValueError(f"no widget for parameter type {param.type!r}")


def method_params(spec: MethodSpec, prefix: str, task: str = "image", layers: dict | None = None,
                  default_layer: str | None = None, get_spec: Callable | None = None) -> dict:
    """Draw the method's hyperparameter widgets (advanced ones in an expander) and return
    {name: value} ready for the engine. SmoothGrad's base method brings its own widgets."""
    values: dict[str, Any] = {}
    basic = [p for p in spec.params if not p.advanced]
    advanced = [p for p in spec.params if p.advanced]
    for param in basic:
        values[param.name] = _param_widget(param, param_key(prefix, spec.name, param.name), task,
                                           layers, default_layer)
    base_spec = None
    if get_spec is not None and any(p.type == "method" for p in spec.params):
        base_name = next(values[p.name] for p in spec.params if p.type == "method")
        base_spec = get_spec(base_name)
        own = {p.name for p in spec.params}
        # Names the wrapper uses itself (e.g. seed) stay the wrapper's: the engine gives them
        # to it, not to the base method.
        base_params = [p for p in base_spec.params if p.name not in own]
        if base_params:
            st.caption(f"{base_spec.label} settings")
            for param in base_params:
                if param.advanced:
                    continue
                values[param.name] = _param_widget(
                    param, param_key(prefix, f"{spec.name}.base.{base_name}", param.name), task,
                    layers, default_layer)
            advanced += [p for p in base_params if p.advanced]
    if advanced:
        with st.expander("Advanced settings"):
            for param in advanced:
                owner = spec.name if param in spec.params else f"{spec.name}.base.{base_spec.name}"
                values[param.name] = _param_widget(param, param_key(prefix, owner, param.name),
                                                   task, layers, default_layer)
    return values


def restore_method_params(reader: UrlReader, spec: MethodSpec, prefix: str, task: str,
                          layers: Sequence[str] | None, get_spec: Callable,
                          url_prefix: str = "p.", base_url_prefix: str = "b.") -> None:
    """Put a link's p.<name> (and, for SmoothGrad's base method, b.<name>) values into the
    widgets' state, each parsed and checked against its spec."""
    own = {p.name for p in spec.params}

    def put(key: str, param: Param, url_key: str) -> None:
        value = reader.spec_param(url_key, param, task, layers=layers)
        # The layer selectbox offers "" for "the model's default layer".
        st.session_state[key] = "" if (param.type == "layer" and value is None) else value

    for param in spec.params:
        put(param_key(prefix, spec.name, param.name), param, f"{url_prefix}{param.name}")
    for param in spec.params:
        if param.type != "method":
            continue
        base_spec = get_spec(st.session_state[param_key(prefix, spec.name, param.name)])
        for bp in base_spec.params:
            if bp.name not in own:
                put(param_key(prefix, f"{spec.name}.base.{base_spec.name}", bp.name), bp,
                    f"{base_url_prefix}{bp.name}")


def url_method_params(spec: MethodSpec, params: dict, url_prefix: str = "p.",
                      base_url_prefix: str = "b.", get_spec: Callable | None = None) -> dict:
    """The query parameters describing ``params`` for this method. With ``get_spec`` only the
    values that differ from their defaults are written (short links where many methods share
    one URL)."""
    own = {p.name: p for p in spec.params}
    base_spec = None
    if get_spec is not None:
        base = next((params.get(p.name) for p in spec.params if p.type == "method"), None)
        base_spec = get_spec(base) if base else None
    out = {}
    for name, value in params.items():
        if get_spec is not None:
            param = own.get(name) or (base_spec.param(name) if base_spec else None)
            if param is not None and value == param.default:
                continue
        key = (url_prefix if name in own else base_url_prefix) + name
        out[key] = "" if value is None else value
    return out
