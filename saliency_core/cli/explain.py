"""``saliency explain``: images (files, folders, globs) or sentences through one model and one
or more methods, to one result file or to a folder with one result per input and an HTML report.

Method flags are generated from the method specs, so a new hyperparameter appears here
without editing this module."""

from __future__ import annotations

import argparse
import difflib
import glob
import json
import sys
from pathlib import Path

import numpy as np

from saliency_core.cli.generation import (
    add_generation_flags,
    check_flags,
    run_generation,
)
from saliency_core.errors import SaliencyError, TargetError
from saliency_core.methods import REGISTRY
from saliency_core.methods import get as method_entry
from saliency_core.methods import specs as method_specs
from saliency_core.show.report import (
    ClusterOutcome,
    InputItem,
    InputOutcome,
    MethodOutcome,
    write_report,
)
from saliency_core.targets import Contrast, class_index

_TYPES = {"int": int, "float": float}
# One result, one input and one method: the file's extension says what it holds.
FILE_OUTPUTS = (".png", ".npz", ".json", ".html")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
REPORT_NAME = "report.html"


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


def _reads(method: str, args) -> set[str]:
    """The hyperparameters a method reads (SmoothGrad: its own and its base method's)."""
    spec = method_entry(method).spec
    names = {p.name for p in spec.params}
    if method_entry(method).wraps:
        base = getattr(args, "base", None) or spec.param("base").default
        names |= {p.name for p in method_entry(base).spec.params}
    return names


def method_params(args, method: str, methods: list[str] | None = None) -> dict:
    """The flags the user gave that ``method`` reads. A flag that none of ``methods`` (default:
    just ``method``) reads is an error, so a typo'd or misplaced flag never goes unnoticed."""
    given = {n: getattr(args, n) for n in spec_flags() if getattr(args, n, None) is not None}
    used = set().union(*(_reads(m, args) for m in (methods or [method])))
    ignored = sorted(set(given) - used)
    if ignored:
        names = " or ".join(methods or [method])
        raise SaliencyError(f"{names} does not use {', '.join('--' + n.replace('_', '-') for n in ignored)}")
    reads = _reads(method, args)
    return {n: v for n, v in given.items() if n in reads}


def _suggest(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(value.lower(), [o.lower() for o in options], n=3, cutoff=0.6)
    by_lower = {o.lower(): o for o in options}
    return f" Did you mean {' or '.join(repr(by_lower[c]) for c in close)}?" if close else ""


def parse_target(value: str, labels: list[str], rather_than: str | None = None):
    """'predicted', a class index or a class name (any case) -> what explain() takes; with
    ``rather_than`` (an index or a name), the Contrast of the two. Names are checked here, so
    a typo fails before any image is read."""
    target = "predicted" if value == "predicted" else _class(value, labels, "target")
    if rather_than is None:
        return target
    return Contrast(target, _class(rather_than, labels, "--rather-than class"))


def _class(value: str, labels: list[str], what: str) -> int:
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        return class_index(value, labels)
    except TargetError:
        raise TargetError(f"unknown {what} {value!r}: give a class index (0-{len(labels) - 1}), a "
                          f"class name or 'predicted'.{_suggest(value, labels)}") from None


def describe_target(args) -> str:
    """The target as the report's settings show it."""
    rather_than = getattr(args, "rather_than", None)
    return args.target if rather_than is None else f"{args.target} rather than {rather_than}"


def parse_methods(values: list[str] | None) -> list[str]:
    names = [n.strip() for v in (values or ["gradient"]) for n in v.split(",") if n.strip()]
    for name in names:
        if name not in REGISTRY:
            raise SaliencyError(f"unknown method {name!r}; methods are {', '.join(REGISTRY)}."
                                f"{_suggest(name, list(REGISTRY))}")
    return list(dict.fromkeys(names))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="explain images or sentences; one result per input and an HTML report",
        description="Explain images (INPUT: files, folders or quoted globs such as 'photos/*.jpg') "
        "or sentences (text models: INPUT is the text, or @file.txt with one sentence per line), "
        "or prompts of a language model (--generate N or --continuation TEXT). "
        "--out FOLDER writes per input <name>.json, <name>.npz and an overlay per method, plus "
        "report.html; --out FILE.png|.npz|.json|.html writes one result for one input and method.")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--model", default="shapes-cnn", help="model name (see `models`)")
    p.add_argument("--method", action="append", metavar="NAME[,NAME]",
                   help=f"method(s), repeatable or comma-separated (default gradient): {', '.join(REGISTRY)}")
    p.add_argument("--target", default="predicted",
                   help="class index, class name or 'predicted' (default): the class explained")
    p.add_argument("--rather-than", metavar="CLASS", default=None,
                   help="explain --target rather than this class (index or name): the score is "
                   "logit(target) - logit(CLASS), the same as log p(target) - log p(CLASS); "
                   "e.g. --target cat --rather-than dog")
    p.add_argument("--out", required=True, type=Path,
                   help="a folder (results per input and report.html), or one file: .png (overlay "
                   "or token chart), .npz (raw attribution), .json (metadata), .html (report)")
    p.add_argument("--all", action="store_true", help="with --out FILE: also write the .npz and .json beside it")
    p.add_argument("--top-k", type=int, default=5, help="top classes listed per input (default 5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--batch-size", type=int, default=None, help="points per model pass (default: by memory)")
    p.add_argument("--aggregation", default="max_abs", help="channel aggregation for the image overlay")
    p.add_argument("--cmap", default="inferno", help="matplotlib colormap for the overlay")
    p.add_argument("--clusters", action="store_true",
                   help="images, --out FOLDER: add the strategies to report.html, the maps of "
                   "each predicted class (first method) clustered by spectral relevance analysis")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity")
    add_method_flags(p)
    add_generation_flags(p)
    p.set_defaults(func=run_explain)


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def image_items(values: list[str]) -> list[InputItem]:
    paths: list[Path] = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise SaliencyError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder {path}")
            paths += found
        elif glob.has_magic(value):
            found = sorted(Path(p) for p in glob.glob(value, recursive=True) if Path(p).is_file())
            if not found:
                raise SaliencyError(f"no files match {value!r}")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise SaliencyError(f"no such image file: {path}")
    taken: set[str] = set()
    return [InputItem(_unique(p.stem, taken), str(p), path=p) for p in paths]


def text_items(values: list[str], model: str) -> list[InputItem]:
    sentences: list[tuple[str, str]] = []
    for value in values:
        if value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise SaliencyError(f"no such file of sentences: {path}")
            lines = [s.strip() for s in path.read_text(encoding="utf-8").splitlines()]
            sentences += [(s, f"{path}:{i}") for i, s in enumerate(lines, 1) if s]
        elif Path(value).suffix.lower() in IMAGE_SUFFIXES or Path(value).is_dir():
            raise SaliencyError(f"{value} looks like an image or a folder, but {model} is a text model: "
                                "give the sentence itself, or @file.txt with one sentence per line.")
        else:
            sentences.append((value, "argument"))
    if not sentences:
        raise SaliencyError("no sentences to explain")
    width = len(str(len(sentences)))
    return [InputItem(f"s{i:0{width}d}", source, text=text) for i, (text, source) in enumerate(sentences, 1)]


def output_mode(out: Path) -> str:
    """'folder' or 'file'; an extension we cannot write is an error before any work is done."""
    suffix = out.suffix.lower()
    if out.is_dir() or not suffix:
        return "folder"
    if suffix not in FILE_OUTPUTS:
        raise SaliencyError(f"--out {out}: unknown extension {suffix!r}; give a folder (one result per "
                            f"input and {REPORT_NAME}) or a file ending in {', '.join(FILE_OUTPUTS)}")
    return "file"


def check_one_result(out: Path, n_inputs: int, n_methods: int) -> None:
    if n_inputs > 1 or n_methods > 1:
        raise SaliencyError(f"--out {out} holds one result, but there are {n_inputs} inputs and "
                            f"{n_methods} methods: give a folder for --out")


def run_explain(args) -> int:
    from saliency_core.models import load_model

    methods = parse_methods(args.method)
    mode = output_mode(args.out)
    if args.top_k < 1:
        raise SaliencyError("--top-k must be at least 1")
    loaded = load_model(args.model, device=args.device)
    language_model = loaded.task == "text-generation"
    check_flags(args, language_model)
    textual = loaded.task in ("text", "text-generation")
    items = text_items(args.inputs, args.model) if textual else image_items(args.inputs)
    if mode == "file":
        check_one_result(args.out, len(items), len(methods))
    params = {m: method_params(args, m, methods) for m in methods}
    for p in params.values():
        if args.batch_size:
            p["batch_size"] = args.batch_size
    if language_model:
        return run_generation(args, loaded, items, methods, params, mode)
    target = parse_target(args.target, loaded.labels, args.rather_than)
    clusters_wanted = getattr(args, "clusters", False)
    if clusters_wanted and (loaded.task != "image" or mode == "file"):
        raise SaliencyError("--clusters needs images and a folder for --out")
    compact: list[tuple[str, str, np.ndarray]] = []  # (name, predicted label, map)

    from tqdm import tqdm

    outcomes: list[InputOutcome] = []
    with tqdm(total=len(items) * len(methods), unit="map", desc="explain", file=sys.stderr,
              disable=args.no_progress) as bar:
        for item in items:
            started = bar.n
            try:
                outcome, raw, records = explain_item(args, loaded, item, methods, params, target, bar)
            except SaliencyError as exc:
                if mode == "file":
                    raise
                outcomes.append(InputOutcome.of(item, error=str(exc)))
                bar.update(len(methods) - (bar.n - started))
                continue
            outcomes.append(outcome)
            if clusters_wanted:
                compact.append((item.name, records[0]["predicted_label"], _compact(raw[methods[0]])))
            if mode == "file":
                return write_one(args, loaded, item, methods[0], outcome, raw, records[0])
            write_item(args.out, item, outcome, raw, records)
    from saliency_core.engine.stream import module_device

    settings = {"model": args.model, "methods": ", ".join(methods), "target": describe_target(args),
                "device": str(module_device(loaded.model))}
    strategies = strategy_outcomes(compact, args.cmap) if clusters_wanted else []
    report = write_report(args.out / REPORT_NAME, f"saliency explain · {args.model}", settings,
                          outcomes, strategies)
    failed = [o for o in outcomes if o.error]
    for o in failed:
        print(f"error: {o.source}: {o.error}", file=sys.stderr)
    print(f"wrote {len(outcomes) - len(failed)} results to {args.out} and the report {report}")
    return 2 if failed else 0


def _compact(attribution: np.ndarray) -> np.ndarray:
    import torch

    from saliency_core.datasets.explain import DEFAULT_MAP_SIZE, compact_maps

    return compact_maps(torch.from_numpy(np.asarray(attribution))[None], DEFAULT_MAP_SIZE)[0]


def strategy_outcomes(compact: list[tuple[str, str, np.ndarray]], cmap: str) -> list[ClusterOutcome]:
    """The maps of each predicted class clustered (spectral relevance analysis)."""
    from PIL import Image

    from saliency_core import render
    from saliency_core.datasets import measures
    from saliency_core.evaluation.clustering import cluster_maps, prepare_maps

    out: list[ClusterOutcome] = []
    for group in sorted({g for _n, g, _m in compact}):
        rows = [(n, m) for n, g, m in compact if g == group]
        maps = np.stack([m for _n, m in rows])
        found = cluster_maps(maps)
        for k in range(found.n_clusters):
            members = np.flatnonzero(found.labels == k)
            mean = prepare_maps(maps[members]).mean(0).reshape(maps.shape[1:])
            big = np.asarray(Image.fromarray(mean.astype(np.float32), mode="F").resize(
                (128, 128), Image.Resampling.BILINEAR))
            corners = float(measures.corner_share(mean[None])[0])
            border = float(measures.border_share(mean[None])[0])
            out.append(ClusterOutcome(group, k, [rows[int(i)][0] for i in members],
                                      render.to_png(render.colorize(render.normalize(big), cmap)),
                                      corners, border, bool(measures.looks_at_the_edges(mean[None])[0])))
    return out


def explain_item(args, loaded, item: InputItem, methods, params, target, bar):
    """Run every method on one input -> (report entry, raw arrays, one record per method)."""
    from saliency_core import render

    probs: np.ndarray
    raw: dict[str, np.ndarray] = {}
    records: list[dict] = []
    outcome = InputOutcome.of(item)
    if item.text is not None:
        from saliency_core.text.classifier import attribute_text

        for method in methods:
            r = attribute_text(loaded, loaded.tokenizer, item.text, method, target, **params[method])
            probs, predicted, tgt = r.probabilities, r.predicted, r.target
            raw[f"{method}.attribution"], raw[f"{method}.scores"] = r.attribution.numpy(), r.scores
            raw["tokens"] = np.array(r.tokens)
            outcome.methods.append(MethodOutcome(method, r.metadata["time_s"],
                                                 token_html=render.token_html(r.tokens, r.scores, r.special)))
            records.append(_record(args, loaded, item, r.metadata, probs, predicted, tgt))
            bar.update(1)
    else:
        from saliency_core.api import explain
        from saliency_core.io.images import load_image

        assert item.path is not None  # an image item always has its path
        image, notices = load_image(item.path.read_bytes())
        for n in notices:
            print(f"note: {item.source}: {n}", file=sys.stderr)
        x = loaded.preprocess(image)
        picture = loaded.unpreprocess(x)
        outcome.image_png = render.to_png(picture)
        raw["input"] = x[0].cpu().numpy()
        for method in methods:
            e = explain(loaded, x, method, target, **params[method])
            probs, predicted, tgt = e.probabilities[0].cpu().numpy(), int(e.predicted[0]), int(e.target[0])
            raw[method] = e.attribution[0].detach().cpu().numpy()
            overlay = overlay_picture(args, picture, raw[method])
            outcome.methods.append(MethodOutcome(method, e.metadata["time_s"], overlay_png=render.to_png(overlay)))
            records.append(_record(args, loaded, item, e.metadata, probs, predicted, tgt))
            bar.update(1)
    order = np.argsort(-probs)[: args.top_k]
    outcome.top = [(loaded.labels[int(i)], float(probs[int(i)])) for i in order]
    outcome.target = records[0]["target_label"]
    if "rather_than_label" in records[0]:
        outcome.target += f" rather than {records[0]['rather_than_label']}"
    return outcome, raw, records


def _record(args, loaded, item: InputItem, meta: dict, probs, predicted: int, tgt: int) -> dict:
    record = {"model": args.model, "input": item.text if item.text is not None else item.source,
              "target_label": loaded.labels[tgt], "predicted_label": loaded.labels[predicted],
              "probability": float(probs[predicted]), **meta}
    value = meta.get("target_value")
    if isinstance(value, dict) and "rather_than" in value:
        record["rather_than_label"] = loaded.labels[class_index(value["rather_than"], loaded.labels)]
    return record


def overlay_picture(args, picture: np.ndarray, attribution: np.ndarray) -> np.ndarray:
    from saliency_core import render

    heat = render.aggregate_channels(attribution, args.aggregation) if attribution.ndim == 3 else attribution
    sign = "absolute" if args.aggregation != "signed_sum" else "signed"
    return render.overlay(picture, render.normalize(heat, sign=sign), cmap=args.cmap, alpha=args.alpha)


def write_item(out: Path, item: InputItem, outcome: InputOutcome, raw: dict, records: list[dict]) -> None:
    """Folder mode: <name>.json (every method's record), <name>.npz, <name>.<method>.png."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {"input": records[0]["input"], "model": records[0]["model"],
               "predicted_label": records[0]["predicted_label"], "target_label": outcome.target,
               "top": [{"label": label, "probability": p} for label, p in outcome.top],
               "methods": {r["method"]: r for r in records}}
    (out / f"{item.name}.json").write_text(json.dumps(summary, indent=2, default=str))
    np.savez_compressed(out / f"{item.name}.npz", **raw)
    for m in outcome.methods:
        if m.overlay_png is not None:
            (out / f"{item.name}.{m.method}.png").write_bytes(m.overlay_png)


def write_one(args, loaded, item: InputItem, method: str, outcome: InputOutcome, raw: dict, record: dict) -> int:
    """File mode: the one result in the format --out names (and .npz/.json with --all)."""
    stem = args.out.with_suffix("")
    outputs = {args.out.suffix.lower()} | ({".npz", ".json"} if args.all else set())
    if ".png" in outputs:
        if item.text is None:
            stem.with_suffix(".png").write_bytes(outcome.methods[0].overlay_png or b"")
        else:
            _token_chart(list(raw["tokens"]), raw[f"{method}.scores"], stem.with_suffix(".png"))
    if ".html" in outputs:
        write_report(stem.with_suffix(".html"), f"saliency explain · {args.model}",
                     {"model": args.model, "method": method, "target": describe_target(args)}, [outcome])
    if ".npz" in outputs:
        arrays = {("attribution" if k == method else k.removeprefix(f"{method}.")): v for k, v in raw.items()}
        np.savez_compressed(stem.with_suffix(".npz"), **arrays)
    if ".json" in outputs:
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
    meta = record
    rather = f" rather than {record['rather_than_label']}" if "rather_than_label" in record else ""
    print(f"predicted: {record['predicted_label']} ({record['probability']:.1%}); explained: "
          f"{record['target_label']}{rather}; {meta['passes']} passes in {meta['time_s']:.2f} s on {meta['device']}")
    if "completeness_delta" in meta:
        print(f"completeness: sum of attributions {meta['sum_attribution'][0]:.4f} vs "
              f"f(x) - f(baseline) {meta['f_x'][0] - meta['f_baseline'][0]:.4f}")
    for suffix in sorted(outputs):
        print(f"wrote {stem.with_suffix(suffix)}")
    return 0


def _token_chart(tokens: list[str], scores: np.ndarray, path: Path) -> None:
    from saliency_core.render import token_chart

    token_chart(tokens, scores).savefig(path, dpi=120)  # the app's colours: red for, blue against
