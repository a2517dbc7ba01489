"""``saliency sanity``: run both sanity tests on a bundled model and write the measured table
(docs/SANITY.md) and optionally a figure."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from saliency_core.evaluation.sanity import DEFAULT_THRESHOLD
from saliency_core.evaluation.sanity_figure import write_figure
from saliency_core.evaluation.sanity_report import run_report


def register(subparsers) -> None:
    from saliency_core.models.cache import REPO_ROOT, in_checkout

    # The measured table belongs in the repository's docs; an installed package writes beside you.
    default_out = REPO_ROOT / "docs" / "SANITY.md" if in_checkout() else Path("SANITY.md")

    p = subparsers.add_parser(
        "sanity", help="run the model and data randomization sanity checks and write the table",
        description="Adebayo et al.'s two sanity checks for every method: cascading model "
        "parameter randomization and data randomization (a model trained on shuffled labels). "
        "Prints a markdown table and writes it to --out.")
    p.add_argument("--model", default="shapes-cnn", help="image model name (see `models`)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="methods to test (default: every image method)")
    p.add_argument("--samples", type=int, default=8, help="number of generated images (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed for the images and the re-initialisation")
    p.add_argument("--random-labels-model", default=None,
                   help="model trained on shuffled labels for the data test (default: the "
                   "bundled pair, e.g. shapes-cnn-random-labels for shapes-cnn)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"Spearman(abs) below which a map counts as changed (default {DEFAULT_THRESHOLD})")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the GPU when present)")
    p.add_argument("--out", default=str(default_out),
                   help=f"markdown file to write ('-' to only print); default {default_out}")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="also draw the first image's maps, step by step, into this PNG file")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> int:
    parts = ["python -m saliency_core sanity", f"--model {args.model}"]
    if args.methods:
        parts.append("--methods " + " ".join(args.methods))
    parts += [f"--samples {args.samples}", f"--seed {args.seed}"]
    if args.random_labels_model:
        parts.append(f"--random-labels-model {args.random_labels_model}")
    if args.threshold != DEFAULT_THRESHOLD:
        parts.append(f"--threshold {args.threshold}")
    started = time.perf_counter()
    report = run_report(args.model, args.methods, args.samples, args.seed,
                        args.random_labels_model, args.threshold, args.device,
                        command=" ".join(parts), log=lambda s: print(s, file=sys.stderr),
                        keep_maps=args.figure is not None)
    text = report.markdown()
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"written to {out} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.figure:
        print(f"figure written to {write_figure(report, args.figure)}", file=sys.stderr)
    return 0
