"""Localisation of each method on the bundled shapes models: the pointing game and the mass in
the mask on held-out images, the table of docs/shapes_vit.md.

    python -m benchmarks.localisation            # 500 images, writes the docs block
    python -m benchmarks.localisation --n 32     # a quick look, printed only
    make bench-localisation

Every image holds one shape whose mask is known, so a map that explains the class should peak
on it (pointing game, Zhang et al. 2016) and put its positive mass there (mass in mask, to be
read against the share of the image the masks cover). The images come from seeds no bundled
model was trained or tested on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.report import replace_block

DOC = Path(__file__).resolve().parents[1] / "docs" / "shapes_vit.md"
BEGIN = "<!-- localisation table: python -m benchmarks.localisation -->"
END = "<!-- end localisation table -->"
HEADING = "## Localisation on held-out images"
SEED = 7200
MODELS = ["shapes-vit", "shapes-cnn"]
METHODS = ["gradcam", "attention_rollout", "attention_relevance", "gradient",
           "integrated_gradients", "smoothgrad"]
CHUNK = 50  # images per attribute call: bounded memory for IG and SmoothGrad
# Dozens of passes per image: measured on the first images only (--costly-n).
COSTLY = {"integrated_gradients", "smoothgrad"}


def measure(model_name: str, n: int, costly_n: int, seed: int = SEED) -> list[dict]:
    """One row per method the model can run: pointing game and mass in mask over ``n`` held-out
    images (``costly_n`` of them for IG and SmoothGrad), explaining the true class."""
    from saliency_core import attribute, evaluation, load_model
    from saliency_core.methods import problem_with
    from saliency_core.training.shapes import generate
    from saliency_core.training.shapes_cnn import images_to_tensor

    loaded = load_model(model_name, "cpu")
    data = generate(n, seed)
    x = images_to_tensor(data.images)
    rows = []
    for method in METHODS:
        if problem_with(method, loaded.model) is not None:
            continue
        started = time.perf_counter()
        pointing, mass = [], []
        count = min(n, costly_n) if method in COSTLY else n
        for i in range(0, count, CHUNK):
            end = min(count, i + CHUNK)
            maps = attribute(loaded, x[i:end], method, data.labels[i:end].tolist())
            pointing.append(evaluation.pointing_game(maps, data.masks[i:end]))
            mass.append(evaluation.mass_in_mask(maps, data.masks[i:end]))
        rows.append({"model": model_name, "method": method, "images": count,
                     "pointing": float(np.concatenate(pointing).mean()),
                     "mass_in_mask": float(np.concatenate(mass).mean()),
                     "mask_area": float(data.masks.mean()),
                     "seconds": time.perf_counter() - started})
    return rows


def markdown(rows: list[dict], n: int) -> str:
    area = rows[0]["mask_area"] if rows else float("nan")
    intro = (f"{n} held-out images (seed {SEED}; IG and SmoothGrad on the first of them), "
             f"each explained for its true class; the masks cover {area:.1%} of the image, so "
             "a map spread evenly would put that share of its mass in them. CPU, default "
             "parameters, default layer.")
    lines = [intro, "",
             "| model | method | images | pointing game | mass in mask | seconds |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{r['model']}` | {r['method']} | {r['images']} | {r['pointing']:.3f} "
              f"| {r['mass_in_mask']:.3f} | {r['seconds']:.1f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="held-out images (default 500)")
    parser.add_argument("--costly-n", type=int, default=100,
                        help="images for IG and SmoothGrad, the first of the n (default 100)")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=None,
                        help="write the table into docs/shapes_vit.md (default: only at 500)")
    args = parser.parse_args(argv)
    rows = [row for name in args.models for row in measure(name, args.n, args.costly_n)]
    table = markdown(rows, args.n)
    print(table)
    if args.write if args.write is not None else args.n == 500:
        replace_block(DOC, BEGIN, END, HEADING, table)
        print(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
