"""``saliency explain`` for a language model: which prompt tokens each generated token
depended on.

    saliency explain --model gpt2 --generate 12 "The capital of France is" --out out/
    saliency explain --model gpt2 --continuation " Paris" "The capital of France is" --out m.png

Each INPUT is a prompt (or @file.txt, one prompt per line). A folder gets, per prompt and
method, ``<name>.<method>.json`` (the whole result), ``.npz`` (the matrix and ids) and
``.png`` (the heatmap), and ``report.html`` showing the matrices; one file gets one result.
"""

from __future__ import annotations

import sys
from pathlib import Path

from saliency_core.errors import SaliencyError
from saliency_core.show.report import (
    InputItem,
    InputOutcome,
    MethodOutcome,
    write_report,
)
from saliency_core.targets import TOKEN_SCORES

DEFAULT_GENERATE = 8


def add_generation_flags(parser) -> None:
    group = parser.add_argument_group("language models (task text-generation)")
    group.add_argument("--generate", type=int, metavar="N", default=None,
                       help=f"tokens the model generates greedily and which are explained (default "
                       f"{DEFAULT_GENERATE})")
    group.add_argument("--continuation", metavar="TEXT", default=None,
                       help="explain this continuation of the prompt instead of generating one, "
                       "e.g. ' Paris' (mind the leading space)")
    group.add_argument("--score", choices=TOKEN_SCORES, default="log_prob",
                       help="what is explained of each generated token (default log_prob, as Captum)")


def check_flags(args, is_language_model: bool) -> None:
    """Generation flags only for a language model, and not both of --generate and
    --continuation."""
    given = [f for f, v in (("--generate", args.generate), ("--continuation", args.continuation))
             if v is not None]
    if args.score != "log_prob":
        given.append("--score")
    if not is_language_model:
        if given:
            raise SaliencyError(f"{' and '.join(given)} apply to language models (task "
                                f"text-generation); {args.model} is not one")
        return
    if args.generate is not None and args.continuation is not None:
        raise SaliencyError("give --generate N or --continuation TEXT, not both")
    if args.target != "predicted":
        raise SaliencyError("--target names a class; for a language model use --score "
                            f"({', '.join(TOKEN_SCORES)}) and --rather-than TOKEN")


def run_generation(args, loaded, items: list[InputItem], methods: list[str], params: dict,
                   mode: str) -> int:
    """Explain every prompt with every method; write the results and the report."""
    from tqdm import tqdm

    from saliency_core.engine.stream import module_device
    from saliency_core.show.notebook import generation_html, generation_png
    from saliency_core.text.generation import attribute_generation

    count = DEFAULT_GENERATE if args.generate is None else args.generate
    outcomes: list[InputOutcome] = []
    with tqdm(total=len(items) * len(methods), unit="matrix", desc="explain", file=sys.stderr,
              disable=args.no_progress) as bar:
        for item in items:
            outcome = InputOutcome.of(item, target=_what(args))
            results = []
            assert item.text is not None  # text_items made it: every item is a prompt
            try:
                for method in methods:
                    ga = attribute_generation(loaded, loaded.tokenizer, item.text, method,
                                              continuation=args.continuation, max_new_tokens=count,
                                              target=args.score, contrast=args.rather_than,
                                              **params[method])
                    results.append(ga)
                    outcome.methods.append(MethodOutcome(method, ga.metadata["time_s"],
                                                         token_html=generation_html(ga)))
                    bar.update(1)
            except SaliencyError as exc:
                if mode == "file":
                    raise
                outcomes.append(InputOutcome.of(item, error=str(exc)))
                continue
            outcomes.append(outcome)
            if mode == "file":
                return _write_one(args, item, outcome, results[0], generation_png)
            _write_folder(args.out, item, results, generation_png)
    settings = {"model": args.model, "methods": ", ".join(methods), "target": _what(args),
                "device": str(module_device(loaded.model))}
    report = write_report(args.out / "report.html", f"saliency explain · {args.model}", settings,
                          outcomes)
    failed = [o for o in outcomes if o.error]
    for o in failed:
        print(f"error: {o.source}: {o.error}", file=sys.stderr)
    print(f"wrote {len(outcomes) - len(failed)} results to {args.out} and the report {report}")
    return 2 if failed else 0


def _what(args) -> str:
    told = f"{args.score} of each generated token"
    return told if args.rather_than is None else f"{told} rather than {args.rather_than!r}"


def _write_folder(out: Path, item: InputItem, results, png) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for ga in results:
        stem = f"{item.name}.{ga.method}"
        (out / f"{stem}.json").write_text(ga.to_json(indent=2))
        ga.save_npz(out / f"{stem}.npz")
        (out / f"{stem}.png").write_bytes(png(ga))


def _write_one(args, item: InputItem, outcome: InputOutcome, ga, png) -> int:
    stem = args.out.with_suffix("")
    outputs = {args.out.suffix.lower()} | ({".npz", ".json"} if args.all else set())
    if ".png" in outputs:
        stem.with_suffix(".png").write_bytes(png(ga))
    if ".html" in outputs:
        write_report(stem.with_suffix(".html"), f"saliency explain · {args.model}",
                     {"model": args.model, "method": ga.method, "target": _what(args)}, [outcome])
    if ".npz" in outputs:
        ga.save_npz(stem.with_suffix(".npz"))
    if ".json" in outputs:
        stem.with_suffix(".json").write_text(ga.to_json(indent=2))
    tokens = "".join(ga.generated_tokens)
    meta = ga.metadata
    print(f"explained {len(ga.generated_tokens)} tokens {tokens!r}; {meta['passes']} passes in "
          f"{meta['time_s']:.2f} s on {meta['device']}")
    if "completeness" in meta:
        worst = max(abs(v) for v in meta["completeness"]["relative_gap"])
        print(f"completeness: largest relative gap between the attributions' sum and "
              f"f(x) - f(baseline): {worst:.2%}")
    for suffix in sorted(outputs):
        print(f"wrote {stem.with_suffix(suffix)}")
    return 0
