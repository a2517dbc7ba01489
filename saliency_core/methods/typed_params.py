"""The typed keyword parameters of saliency_core.params, generated from the method specs.

A type checker needs TypedDicts written out in source, while the specs are the one
declaration of each method's parameters. So the part of saliency_core/params.py between its
GENERATED markers is this module's output, committed, and a test checks that it is current:

    python -m saliency_core.methods.typed_params --write   # after changing a spec
    python -m saliency_core.methods.typed_params --check   # exit status 1 when out of date

What a spec decides: each method's TypedDict is named by ``MethodSpec.params_type`` (methods
sharing one must declare the same parameters); a method without parameters takes
``EngineOptions`` alone; a parameter's choices become a ``Literal`` named by
``Param.type_name``; ``MethodParams`` accepts every method's parameters.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from saliency_core.methods.specs import MethodSpec, Param

COMMAND = "python -m saliency_core.methods.typed_params --write"
PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.py"
BEGIN = (f"# BEGIN GENERATED from the method specs by `{COMMAND}`:\n"
         "# edit the specs (saliency_core/methods), not this block.\n")
END = "# END GENERATED\n"

_WIDTH = 100
_SCALARS = {"int": "int", "float": "float", "bool": "bool", "layer": "str | nn.Module | None"}

_METHOD_PARAMS_DOC = '''\
"""Every method's keyword parameters in one mapping (``attribute(..., **params)``).

    Each method reads only its own (see the per-method TypedDicts above and
    ``saliency_core.get_method(name).params``); passing one a method does not use raises
    ``ParameterError``. With ``method="smoothgrad"`` the base method's parameters (for
    instance ``steps`` when ``base="integrated_gradients"``) are accepted too.
    """'''


def _camel(name: str) -> str:
    return "".join(w.capitalize() for w in name.split("_"))


class _Aliases:
    """The Literal aliases, in order of first use; one name never means two sets of choices."""

    def __init__(self) -> None:
        self.values: dict[str, tuple] = {}
        self.owner: dict[str, str] = {}

    def name(self, alias: str, choices: tuple, owner: str) -> str:
        known = self.values.setdefault(alias, choices)
        self.owner.setdefault(alias, owner)
        if known != choices:
            raise ValueError(f"{owner} and {self.owner[alias]} both name their choices {alias!r} "
                             "but offer different ones: give one of them another Param.type_name")
        return alias

    def source(self) -> str:
        out = ""
        for alias, choices in self.values.items():
            opening = f"{alias} = Literal["
            items = textwrap.wrap(", ".join(map(_literal, choices)) + "]", _WIDTH - len(opening),
                                  break_long_words=False, break_on_hyphens=False)
            out += f"#: The choices of {self.owner[alias]}.\n"
            out += opening + ("\n" + " " * len(opening)).join(items) + "\n"
        return out


def _literal(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _annotation(p: Param, owner: str, aliases: _Aliases) -> str:
    if p.type in _SCALARS:
        return _SCALARS[p.type]
    if p.type not in ("choice", "method"):
        raise ValueError(f"{owner}: no Python type for a parameter of type {p.type!r}")
    base = p.type_name or _camel(p.name)
    if not set(p.text_choices) <= set(p.choices):  # e.g. text baselines: a set of their own
        parts = [aliases.name(f"Image{base}", tuple(p.choices), f"{owner} for image models"),
                 aliases.name(f"Text{base}", tuple(p.text_choices), f"{owner} for text models")]
    else:
        parts = [aliases.name(base, tuple(p.choices), owner)]
    if p.accepts_tensor:
        parts += ["float", "torch.Tensor"]
    return " | ".join(parts)


def _field(p: Param, annotation: str) -> str:
    comment = textwrap.wrap(p.help, _WIDTH - 6)
    return "".join(f"    # {line}\n" for line in comment) + f"    {p.name}: {annotation}\n"


def _typed_dict(name: str, methods: list[str], fields: str, doc: str | None = None) -> str:
    if doc is None:
        which = ", ".join(f"``{m}``" for m in methods)
        doc = '"""' + "\n    ".join(textwrap.wrap(
            f"The keyword parameters of {which}, as {'its spec declares' if len(methods) == 1 else 'their specs declare'} "
            "them.", _WIDTH - 10)) + '"""'
    return f"\n\nclass {name}(EngineOptions, total=False):\n    {doc}\n\n{fields}"


def generate(specs: list[MethodSpec] | None = None) -> str:
    """The generated block of saliency_core/params.py, markers included.

    Args:
        specs: The method specs, in registry order (default: the registry's).

    Returns:
        The block's source.

    Raises:
        ValueError: Two methods name one TypedDict (or one Literal) but declare different
            parameters (or choices), or a parameter's type has no Python type.
    """
    if specs is None:
        from saliency_core.methods import specs as registered

        specs = registered()
    aliases = _Aliases()
    groups: dict[str, list[MethodSpec]] = {}
    for spec in specs:
        if spec.params:
            groups.setdefault(spec.params_type, []).append(spec)
    classes: list[str] = []
    union: dict[str, tuple[str, Param]] = {}
    for name, members in groups.items():
        first = members[0]
        for other in members[1:]:
            if other.params != first.params:
                raise ValueError(f"{first.name} and {other.name} both declare {name} but their "
                                 "parameters differ: give one of them another params_type")
        fields = ""
        for p in first.params:
            annotation = _annotation(p, f"{first.name}.{p.name}", aliases)
            if union.setdefault(p.name, (annotation, p))[0] != annotation:
                raise ValueError(f"{p.name} has two types across methods ({annotation} and "
                                 f"{union[p.name][0]}); MethodParams cannot accept both")
            fields += _field(p, annotation)
        classes.append(_typed_dict(name, [m.name for m in members], fields))
    every = "".join(_field(p, annotation) for annotation, p in union.values())
    classes.append(_typed_dict("MethodParams", [], every, _METHOD_PARAMS_DOC))
    return BEGIN + "\n" + aliases.source() + "".join(classes) + "\n\n" + END


def current(path: Path = PARAMS_FILE) -> str:
    """The generated block as committed in ``path`` (empty when its markers are missing).

    Args:
        path: saliency_core/params.py.

    Returns:
        The text from the BEGIN marker to the END marker, both included.
    """
    text = path.read_text()
    start, stop = text.find(BEGIN), text.find(END)
    return "" if start < 0 or stop < start else text[start:stop + len(END)]


def write(path: Path = PARAMS_FILE) -> bool:
    """Replaces the generated block of ``path`` with ``generate()``.

    Args:
        path: saliency_core/params.py.

    Returns:
        Whether the file changed.

    Raises:
        ValueError: The file has no GENERATED markers to replace between.
    """
    text, block = path.read_text(), current(path)
    if not block:
        raise ValueError(f"{path} has no '{BEGIN.splitlines()[0]}' ... '{END.strip()}' block")
    new = text.replace(block, generate())
    if new != text:
        path.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saliency_core.methods.typed_params",
                                     description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite saliency_core/params.py's block")
    action.add_argument("--check", action="store_true", help="exit 1 when the block is out of date")
    args = parser.parse_args(argv)
    if args.write:
        print(f"{PARAMS_FILE}: {'updated' if write() else 'already current'}")
    elif args.check:
        if current() != generate():
            print(f"{PARAMS_FILE} is out of date with the method specs; run {COMMAND}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(generate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
