"""Subcommands ``models``, ``fetch`` and ``train-bundled`` for ``python -m saliency_core``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saliency_core.models.cache import BUNDLED_DIR, cache_root


def register(subparsers) -> None:
    listing = subparsers.add_parser(
        "models",
        help="list the models with their cache status",
        description=_models.__doc__,
    )
    listing.set_defaults(func=_models)

    fetch = subparsers.add_parser(
        "fetch",
        help="download zoo weights into the model cache",
        description="Download zoo weights with the libraries' own downloaders into the cache "
        "($SALIENCY_CACHE; default models_cache/ in a checkout, else the user cache folder), "
        "for offline use and Docker images.",
    )
    fetch.add_argument(
        "names", nargs="+", metavar="NAME",
        help="zoo model names (timm:<name> for any timm model), or 'zoo' for all"
    )
    fetch.set_defaults(func=_fetch)

    train = subparsers.add_parser(
        "train-bundled",
        help="retrain the bundled models (shapes-vit alone takes about 20 minutes on 2 idle CPU "
        "cores; --only NAME for one)",
        description="Regenerate the bundled models' weights and model cards.",
    )
    train.add_argument(
        "--out",
        type=Path,
        default=BUNDLED_DIR,
        help=f"output folder (default {BUNDLED_DIR})",
    )
    train.add_argument(
        "--quick",
        action="store_true",
        help="tiny budget, for tests: the models are useless",
    )
    train.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="train only this model (repeatable)",
    )
    train.add_argument(
        "--threads", type=int, default=2, help="CPU threads for torch (default 2)"
    )
    train.set_defaults(func=_train)


def _models(args: argparse.Namespace) -> int:
    """List every model: task, source, whether its weights are here, and their size."""
    from saliency_core.models.registry import available_models

    rows = [
        (
            m.name,
            m.task,
            m.source,
            "yes" if m.present else "no",
            _size(m.size_bytes, m.present),
        )
        for m in available_models()
    ]
    header = ("name", "task", "source", "present", "size")
    widths = [
        max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))
    ]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths)
            ).rstrip()
        )
    print(f"\ncache: {cache_root()}  (set SALIENCY_CACHE to move it)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from saliency_core.models import registry

    names = []
    for name in args.names:
        # 'zoo': every model the families define and download (not the open families' names).
        names += (
            [n for source in registry.SOURCES if source.downloads for n in source.builtin_names()]
            if name == "zoo"
            else [name]
        )
    failures = 0
    for name in names:
        source = registry.source_of(name)
        note = source.nothing_to_fetch(name) if source is not None else None
        if note is not None:
            print(f"{name}: {note}, nothing to fetch")
            continue
        if source is None or not source.downloads:
            print(
                f"{name}: not a zoo model (see: python -m saliency_core models)",
                file=sys.stderr,
            )
            failures += 1
            continue
        print(f"{name}: fetching into {cache_root()}", flush=True)
        try:
            where = source.fetch(name, progress=True)
        # Network, disk or hash failures alike: report them and go on with the others.
        except Exception as exc:  # noqa: BLE001
            print(
                f"{name}: fetch failed: {exc.__class__.__name__}: {exc}",
                file=sys.stderr,
            )
            failures += 1
            continue
        print(f"{name}: ready in {where}")
    if failures:
        print(f"{failures} of {len(names)} could not be fetched.", file=sys.stderr)
    return 1 if failures else 0


def _train(args: argparse.Namespace) -> int:
    import torch

    from saliency_core.errors import SaliencyError
    from saliency_core.training.train import BUNDLED_NAMES, train_all

    unknown = [n for n in args.only or [] if n not in BUNDLED_NAMES]
    if unknown:
        raise SaliencyError(
            f"Unknown bundled model(s) {', '.join(unknown)}; choose from {', '.join(BUNDLED_NAMES)}."
        )
    torch.set_num_threads(max(1, args.threads))
    cards = train_all(args.out, quick=args.quick, only=args.only)
    for card in cards:
        print(f"{card['name']}: {card['size_bytes']} bytes, {card['metrics']}")
    return 0


def _size(size: int | None, present: bool) -> str:
    if size is None:
        return "-"
    text = f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"
    return text if present else f"~{text} to download"
