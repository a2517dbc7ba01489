"""What every model page does before its own work: the app's navigation, title and caption, the
usable models, a visit restored from a link, the model/device and method pickers, and loading
the model (a failure is shown as a message and the page stops).

A page reads: ``names = page.start(...)``; ``if (reader := page.visit(P)) is not None:`` restore
its own settings with the ``restore_*`` helpers and ``page.restored(reader, P)``; draw its
sidebar with ``model_picker`` / ``method_picker``; load with ``with page.stop_on_error():``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

import saliency_core
from saliency_core.errors import SaliencyError
from saliency_core.methods.specs import MethodSpec
from workbench.jobs.models import (
    MISSING,
    candidate_layers,
    default_device,
    default_model,
    devices,
    get_model,
    is_loaded,
    usable_models,
)
from workbench.ui import plaintext, session
from workbench.ui.navigation import ensure_app_navigation
from workbench.ui.urlstate import UrlReader
from workbench.ui.widgets import restore_method_params, select

DEVICE_HELP = "Where the model runs; a GPU appears here when the server has one."


def start(prefix: str, task: str, title: str, caption: str) -> list[str]:
    """Navigation, title and caption; returns the usable models of ``task`` (or stops the page
    saying how to get one)."""
    ensure_app_navigation()
    st.title(title)
    st.caption(caption)
    names = usable_models(task)
    if not names:
        st.error(MISSING[task])
        st.stop()
    return names


def visit(prefix: str) -> UrlReader | None:
    """The link's (or this session's last) settings when this run starts a visit, else None."""
    return session.reader_for_visit(prefix, widget_key=f"{prefix}.model")


def restore_model(reader: UrlReader, prefix: str, names: list[str], task: str,
                  default: str | None = None) -> str:
    """The link's model and device into the pickers' state; returns the model."""
    model = reader.choice("model", names, default or default_model(task, names))
    st.session_state[f"{prefix}.model"] = model
    st.session_state[f"{prefix}.device"] = reader.choice("device", devices(), default_device())
    return model


def layer_paths(model: str, device: str) -> list[str] | None:
    """The model's candidate CAM layers, to check a link's layer against (None if unknown)."""
    try:
        return [path for path, _ in candidate_layers(model, device)]
    except SaliencyError:
        return None


def restore_method(reader: UrlReader, prefix: str, methods: dict[str, MethodSpec], default: str,
                   task: str, layers: list[str] | None) -> str:
    """The link's method and its parameters into the widgets' state; returns the method."""
    method = reader.choice("method", list(methods), default)
    st.session_state[f"{prefix}.method"] = method
    restore_params(reader, prefix, methods[method], task, layers)
    return method


def restore_params(reader: UrlReader, prefix: str, spec: MethodSpec, task: str,
                   layers: list[str] | None, url_prefix: str = "p.",
                   base_url_prefix: str = "b.") -> None:
    """One method's parameters from the link (``url_prefix`` where several methods share it)."""
    restore_method_params(reader, spec, prefix, task, layers, saliency_core.get_method,
                          url_prefix=url_prefix, base_url_prefix=base_url_prefix)


def restore_methods(reader: UrlReader, prefix: str, methods: dict[str, MethodSpec],
                    default: list[str]) -> list[str]:
    """The link's comma-separated ``methods`` into the multiselect's state; unknown and repeated
    names are left out and said so. Returns the methods chosen."""
    chosen = default
    if "methods" in reader:
        listed = [m for m in reader.params["methods"].split(",") if m]
        unknown = [m for m in listed if m not in methods]
        if unknown:
            shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            reader.problems.append(f"The link names unknown methods ({shown}); "
                                   "they were left out.")
        # Each method's widgets exist once, so a method listed twice is shown once.
        known = list(dict.fromkeys(m for m in listed if m in methods))
        if len(known) < len([m for m in listed if m in methods]):
            reader.problems.append("The link lists a method more than once; each is shown once.")
        chosen = known or default
    st.session_state[f"{prefix}.methods"] = chosen
    return chosen


def restore_target(reader: UrlReader, prefix: str) -> None:
    """The link's target class, checked against the model's classes by the target picker."""
    st.session_state[f"{prefix}.target_raw"] = reader.params.get("target", "predicted")


def restored(reader: UrlReader, prefix: str) -> None:
    """End of a restore: what the link got wrong is shown by ``show_problems`` on this visit."""
    session.keep_problems(prefix, reader.problems)


def show_problems(prefix: str) -> None:
    for problem in session.problems(prefix):
        plaintext.warning(problem)


def model_picker(prefix: str, names: list[str], task: str,
                 default: str | None = None) -> tuple[str, str]:
    """The model and device selectboxes (call inside the sidebar); returns (model, device)."""
    model = select("Model", names, f"{prefix}.model", default or default_model(task, names))
    device = select("Device", devices(), f"{prefix}.device", default_device(), help=DEVICE_HELP)
    return model, device


def method_picker(prefix: str, methods: dict[str, MethodSpec], default: str,
                  format_func: Callable[[str], str] | None = None) -> MethodSpec:
    """The method selectbox and its description (call inside the sidebar); returns its spec."""
    method = select("Method", list(methods), f"{prefix}.method", default,
                    format_func=format_func or (lambda n: methods[n].label))
    spec = methods[method]
    st.caption(spec.description)
    return spec


def _loading(name: str, device: str):
    """A spinner while the model is loaded for the first time on this server."""
    return contextlib.nullcontext() if is_loaded(name, device) else st.spinner(f"Loading {name}...")


def load(name: str, device: str):
    """The shared loaded model (raises SaliencyError: use inside ``stop_on_error``)."""
    with _loading(name, device):
        return get_model(name, device)


def layers(name: str, device: str) -> dict[str, tuple[int, ...]]:
    """The model's candidate CAM layers with their output shapes, for the layer picker."""
    with _loading(name, device):
        return dict(candidate_layers(name, device))


@contextmanager
def stop_on_error() -> Iterator[None]:
    """Loading a model (or preparing its input) that fails shows why and ends the page run."""
    try:
        yield
    except SaliencyError as exc:
        plaintext.error(exc)
        st.stop()
