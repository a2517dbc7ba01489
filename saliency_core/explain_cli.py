"""``python -m saliency_core explain``: one input, one model, one method, results to files.

Method flags are generated from the method specs, so a new hyperparameter appears here
without editing this module."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .errors import SaliencyError, TargetError
from .methods import REGISTRY
from .methods import get as method_entry
from .methods import specs as method_specs

_TYPES = {"int": int, "float": float}


def spec_flags() -> dict[str, list]:
    """Each hyperparameter name -> the Params (one per method) declaring it."""
    flags: dict[str, list] = {}
    for spec in method_specs():
        for p in spec.params:
            flags.setdefault(p.name, []).append((spec.name, p))
    return flags


def add_method_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("method hyperparameters (from the method specs)")
    for name, owners in spec_flags().items():
        p = owners[0][1]
        used_by = ", ".join(m for m, _ in owners)
        help_text = f"{p.help} [{used_by}; default {p.default}]"
        flag = "--" + name.replace("_", "-")
        if p.type == "bool":
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif p.type in ("choice", "method"):
            choices = sorted({c for _m, q in owners for c in (*q.choices, *q.text_choices)})
            group.add_argument(flag, dest=name, choices=choices, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, type=_TYPES.get(p.type, str), default=None, help=help_text)


def method_params(args, method: str) -> dict:
    """Only the flags the user gave, and only those the chosen method (or its base) reads."""
    spec = method_entry(method).spec
    names = {p.name for p in spec.params}
    if method == "smoothgrad":
        base = getattr(args, "base", None) or spec.param("base").default
        names |= {p.name for p in method_entry(base).spec.params}
    given = {n: getattr(args, n) for n in spec_flags() if getattr(args, n, None) is not None}
    ignored = sorted(set(given) - names)
    if ignored:
        raise SaliencyError(f"{method} does not use {', '.join('--' + n.replace('_', '-') for n in ignored)}")
    return given


def parse_target(value: str, labels: list[str]):
    if value == "predicted":
        return "predicted"
    if value.lstrip("-").isdigit():
        return int(value)
    lowered = [label.lower() for label in labels]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    raise TargetError(f"unknown target {value!r}: give a class index, a class name or 'predicted'")


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="explain one image or sentence and write the result",
                              description="Explain an image (INPUT is a file) or a sentence (text "
                              "models: INPUT is the text, or @file.txt).")
    p.add_argument("input")
    p.add_argument("--model", default="shapes-cnn", help="model name (see `models`)")
    p.add_argument("--method", default="gradient", choices=list(REGISTRY))
    p.add_argument("--target", default="predicted", help="class index, class name or 'predicted'")
    p.add_argument("--out", required=True, type=Path,
                   help="output file: .png (overlay or token chart), .npz (raw attribution), "
                   ".json (metadata), .html (text highlight); the other formats are written "
                   "beside it with --all")
    p.add_argument("--all", action="store_true", help="also write the .npz and .json beside --out")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--batch-size", type=int, default=None, help="points per model pass (default: by memory)")
    p.add_argument("--aggregation", default="max_abs", help="channel aggregation for the image overlay")
    p.add_argument("--cmap", default="inferno", help="matplotlib colormap for the overlay")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    add_method_flags(p)
    p.set_defaults(func=run_explain)


def run_explain(args) -> int:
    from .api import explain
    from .models import load_model
    from .text import attribute_text

    loaded = load_model(args.model, device=args.device)
    params = method_params(args, args.method)
    if args.batch_size:
        params["batch_size"] = args.batch_size
    target = parse_target(args.target, loaded.labels)
    outputs = {args.out.suffix.lower()} | ({".npz", ".json"} if args.all else set())
    if loaded.kind == "text":
        text = args.input
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        r = attribute_text(loaded, loaded.tokenizer, text, args.method, target, **params)
        meta, raw, probs = r.metadata, {"attribution": r.attribution.numpy(), "scores": r.scores,
                                         "tokens": np.array(r.tokens)}, r.probabilities
        predicted, tgt = r.predicted, r.target
        _write_text_outputs(args, outputs, r)
    else:
        from .imageio import load_image

        path = Path(args.input)
        if not path.is_file():
            raise SaliencyError(f"no such image file: {path}")
        image, notices = load_image(path.read_bytes())
        for n in notices:
            print(f"note: {n}")
        x = loaded.preprocess(image)
        e = explain(loaded, x, args.method, target, **params)
        meta, probs = e.metadata, e.probabilities[0].numpy()
        predicted, tgt = int(e.predicted[0]), int(e.target[0])
        raw = {"attribution": e.attribution[0].cpu().numpy(), "input": x[0].cpu().numpy()}
        if ".png" in outputs:
            _write_overlay(args, loaded, x, e.attribution[0])
    record = {"model": args.model, "input": args.input if loaded.kind == "text" else str(args.input),
              "target_label": loaded.labels[tgt], "predicted_label": loaded.labels[predicted],
              "probability": float(probs[predicted]), **meta}
    stem = args.out.with_suffix("")
    if ".npz" in outputs:
        np.savez_compressed(stem.with_suffix(".npz"), **raw)
    if ".json" in outputs:
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
    print(f"predicted: {loaded.labels[predicted]} ({probs[predicted]:.1%}); explained: "
          f"{loaded.labels[tgt]}; {meta['passes']} passes in {meta['time_s']:.2f} s on {meta['device']}")
    if "completeness_delta" in meta:
        print(f"completeness: sum of attributions {meta['sum_attribution'][0]:.4f} vs "
              f"f(x) - f(baseline) {meta['f_x'][0] - meta['f_baseline'][0]:.4f}")
    for suffix in sorted(outputs):
        print(f"wrote {stem.with_suffix(suffix)}")
    return 0


def _write_overlay(args, loaded, x, attribution) -> None:
    from PIL import Image

    from . import render

    heat = attribution.detach().cpu().numpy()
    if heat.ndim == 3:
        heat = render.aggregate_channels(heat, args.aggregation)
    sign = "absolute" if args.aggregation != "signed_sum" else "signed"
    image = loaded.unpreprocess(x)
    pic = render.overlay(image, render.normalize(heat, sign=sign), cmap=args.cmap, alpha=args.alpha)
    Image.fromarray(pic).save(args.out.with_suffix(".png"))


def _write_text_outputs(args, outputs, r) -> None:
    from . import render

    stem = args.out.with_suffix("")
    if ".html" in outputs:
        stem.with_suffix(".html").write_text(render.token_html(r.tokens, r.scores, r.special), encoding="utf-8")
    if ".png" in outputs:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(r.tokens)), 3))
        colors = ["#c0392b" if s < 0 else "#2471a3" for s in r.scores]
        ax.bar(range(len(r.tokens)), r.scores, color=colors)
        ax.set_xticks(range(len(r.tokens)), r.tokens, rotation=60, ha="right")
        ax.set_ylabel("attribution")
        fig.tight_layout()
        fig.savefig(stem.with_suffix(".png"), dpi=120)
        plt.close(fig)
