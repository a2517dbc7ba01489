"""``saliency`` (or ``python -m saliency_core``): each subcommand lives beside the code it drives and registers
itself through a ``register(subparsers)`` function listed here."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from saliency_core.errors import SaliencyError

# Modules that contribute subcommands; each exposes register(subparsers).
SUBCOMMAND_MODULES = (
    "saliency_core.cli.models",  # models, fetch, train-bundled
    "saliency_core.cli.explain",  # explain
    "saliency_core.cli.sanity",  # sanity
    "saliency_core.cli.serve",  # serve (imports Ray only when it runs)
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or _program_name(),
        description="Gradient saliency from the command line: list and fetch models, explain "
        "an image or a sentence, run the sanity checks.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def _program_name() -> str:
    """``saliency`` when started as the console script, else the ``-m`` form."""
    launched = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "saliency" if launched.startswith("saliency") and launched != "__main__.py" else (
        "python -m saliency_core")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SaliencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
