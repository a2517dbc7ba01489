"""The public API is typed and documented: every export of saliency_core (and the grids of
saliency_core.render, the readers of saliency_core.io.interop) has a docstring with Args/Returns/Raises and an example that runs, full
type hints, and each method's keyword parameters are declared in saliency_core/params.py
exactly as its spec declares them."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
import re
import typing

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import saliency_core
from saliency_core import params as typed
from saliency_core import render
from saliency_core.harness import ENGINE_OPTIONS
from saliency_core.io import interop
from saliency_core.methods import REGISTRY
from saliency_core.models.base import LoadedModel, ModelInfo

# Names the library imports for annotations only (under TYPE_CHECKING), to resolve its hints.
HINT_NAMES = {"LoadedModel": LoadedModel, "ModelInfo": ModelInfo, "Figure": Figure,
              "Model": typed.Model, "Target": typed.Target, "torch": torch, "pd": pd}


def hints_of(obj) -> dict[str, typing.Any]:
    return typing.get_type_hints(obj, localns=HINT_NAMES)


EXPORTS = {name: getattr(saliency_core, name) for name in saliency_core.__all__}
GRIDS = {f"render.{n}": getattr(render, n) for n in ("grid", "method_grid", "class_grid", "attribution_map",
                                                     "input_image", "token_chart")}
READERS = {f"interop.{n}": getattr(interop, n) for n in ("as_array", "as_tensor")}
DOCUMENTED = {**EXPORTS, **GRIDS, **READERS}


def sections(doc: str) -> dict[str, str]:
    """Google-style sections of a docstring: name -> body."""
    doc = inspect.cleandoc(doc)
    found: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        heading = re.fullmatch(r"(Args|Arguments|Returns|Raises|Example|Examples|Attributes):", line.strip())
        if heading and not line.startswith(" "):
            current = heading.group(1)
            found[current] = ""
        elif current is not None:
            if line and not line.startswith(" "):
                current = None  # prose after the section
            else:
                found[current] += line + "\n"
    return found


def own_parameters(fn) -> list[inspect.Parameter]:
    return [p for name, p in inspect.signature(fn).parameters.items() if name not in ("self", "cls")]


def public_methods(cls) -> dict[str, typing.Any]:
    return {name: member for name, member in vars(cls).items()
            if inspect.isfunction(member) and not name.startswith("_")}


def args_problems(name: str, found: dict[str, str], params: list[inspect.Parameter]) -> list[str]:
    if not params:
        return []
    args = found.get("Args", "")
    out = [] if args else [f"{name}: no Args section"]
    for p in params:
        label = ("**" if p.kind is p.VAR_KEYWORD else "*" if p.kind is p.VAR_POSITIONAL else "") + p.name
        if not re.search(rf"^\s+{re.escape(label)}:", args, re.MULTILINE):
            out.append(f"{name}: Args does not describe {label}")
    return out


def problems_of_function(name: str, fn, *, method: bool = False) -> list[str]:
    doc = inspect.getdoc(fn) or ""
    found = sections(doc)
    params = own_parameters(fn)
    out = args_problems(name, found, params)
    hints = hints_of(fn)
    if hints.get("return", type(None)) is not type(None) and "Returns" not in found:
        out.append(f"{name}: no Returns section")
    # Top-level functions with parameters can be given bad ones; a method must say what it
    # raises when its own code raises.
    raises = bool(params) if not method else "raise " in inspect.getsource(fn)
    if raises and "Raises" not in found:
        out.append(f"{name}: no Raises section")
    if not method and ">>>" not in found.get("Example", found.get("Examples", "")):
        out.append(f"{name}: no Example with >>>")
    return out


def problems_of_class(name: str, cls) -> list[str]:
    doc = cls.__doc__ or ""
    found = sections(doc)
    out = []
    if ">>>" not in found.get("Example", found.get("Examples", "")):
        out.append(f"{name}: no Example with >>>")
    if dataclasses.is_dataclass(cls):
        attributes = found.get("Attributes", "")
        for f in dataclasses.fields(cls):
            if not re.search(rf"^\s+{f.name}:", attributes, re.MULTILINE):
                out.append(f"{name}: Attributes does not describe {f.name}")
    elif "__init__" in vars(cls):  # the constructor is documented in the class docstring
        out += args_problems(name, found, own_parameters(cls.__init__))
        if "Raises" not in found and "raise " in inspect.getsource(cls.__init__):
            out.append(f"{name}: no Raises section for its constructor")
    for method_name, member in public_methods(cls).items():
        out += problems_of_function(f"{name}.{method_name}", member, method=True)
    return out


def test_every_export_has_args_returns_raises_and_an_example():
    problems = []
    for name, obj in DOCUMENTED.items():
        if inspect.isclass(obj):
            problems += problems_of_class(name, obj)
        else:
            problems += problems_of_function(name, obj)
    assert not problems, "\n".join(problems)


def untyped(name: str, fn) -> list[str]:
    hints = hints_of(fn)
    out = [f"{name}: parameter {p.name} has no type" for p in own_parameters(fn) if p.name not in hints]
    if fn.__name__ != "__init__" and "return" not in hints:
        out.append(f"{name}: no return type")
    for p in own_parameters(fn):
        if p.kind is p.VAR_KEYWORD and typing.get_origin(hints.get(p.name)) is not typing.Unpack:
            out.append(f"{name}: **{p.name} is not a typed mapping (Unpack[TypedDict])")
    return out


def test_every_export_is_fully_typed_and_keyword_parameters_are_typed_mappings():
    problems = []
    for name, obj in DOCUMENTED.items():
        if inspect.isclass(obj):
            if "__init__" in vars(obj) and not dataclasses.is_dataclass(obj):
                problems += untyped(f"{name}.__init__", obj.__init__)
            for method_name, member in public_methods(obj).items():
                problems += untyped(f"{name}.{method_name}", member)
        else:
            problems += untyped(name, obj)
    assert not problems, "\n".join(problems)


def test_the_checks_above_catch_a_missing_section_and_a_bare_kwargs():
    def bare(model: nn.Module, **params) -> torch.Tensor:
        """Something.

        Args:
            model: A model.

        Returns:
            A tensor.
        """
        raise NotImplementedError

    problems = problems_of_function("bare", bare) + untyped("bare", bare)
    assert "bare: Args does not describe **params" in problems
    assert "bare: no Raises section" in problems and "bare: no Example with >>>" in problems
    assert "bare: **params is not a typed mapping (Unpack[TypedDict])" in problems


def _keys(mapping: type) -> set[str]:
    return set(hints_of(mapping))


ENGINE_KEYS = _keys(typed.EngineOptions)


def test_engine_options_are_declared_as_the_harness_reads_them():
    # normalization is read by the harness before the engine options are split off.
    assert ENGINE_KEYS == set(ENGINE_OPTIONS) | {"normalization"}


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_each_method_has_a_typed_mapping_naming_exactly_its_spec_parameters(method):
    assert method in typed.PARAMS_BY_METHOD, f"saliency_core/params.py: PARAMS_BY_METHOD lacks {method}"
    mapping = typed.PARAMS_BY_METHOD[method]
    spec = REGISTRY[method].spec
    assert _keys(mapping) - ENGINE_KEYS == {p.name for p in spec.params}
    assert ENGINE_KEYS <= _keys(mapping)
    union = _keys(typed.MethodParams)
    assert {p.name for p in spec.params} <= union, "MethodParams must accept every method's parameters"


def _literal_values(annotation) -> set:
    if typing.get_origin(annotation) is typing.Literal:
        return set(typing.get_args(annotation))
    return set().union(*(_literal_values(a) for a in typing.get_args(annotation))) if typing.get_args(annotation) else set()


def _types_in(annotation) -> set:
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    if typing.get_origin(annotation) is typing.Literal:
        return {str}
    return set().union(*(_types_in(a) for a in args))


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_each_declared_parameter_has_the_type_and_choices_of_its_spec(method):
    hints = hints_of(typed.PARAMS_BY_METHOD[method])
    python_type = {"int": int, "float": float, "bool": bool}
    for p in REGISTRY[method].spec.params:
        annotation = hints[p.name]
        if p.type in python_type:
            assert python_type[p.type] in _types_in(annotation), (method, p.name, annotation)
        elif p.type in ("choice", "method"):
            declared = _literal_values(annotation)
            assert declared == set(p.choices) | set(p.text_choices), (method, p.name, declared)
            if p.accepts_tensor:
                assert torch.Tensor in _types_in(annotation), (method, p.name)
        elif p.type == "layer":
            assert {str, nn.Module, type(None)} <= _types_in(annotation), (method, p.name)


def test_the_spec_check_fails_when_a_method_lacks_its_mapping(monkeypatch):
    monkeypatch.delitem(typed.PARAMS_BY_METHOD, "layercam")
    with pytest.raises(AssertionError, match="PARAMS_BY_METHOD lacks layercam"):
        test_each_method_has_a_typed_mapping_naming_exactly_its_spec_parameters("layercam")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_the_examples_run(name):
    obj = DOCUMENTED[name]
    finder = doctest.DocTestFinder(recurse=False)
    tests = finder.find(obj, name, module=inspect.getmodule(obj))
    assert tests and tests[0].examples, f"{name} has no example"
    torch.manual_seed(0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0, f"{name}: {runner.failures} example(s) failed (output above)"
