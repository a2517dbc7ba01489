"""Datasets: ``python -m benchmarks.dataset [--quick]``.

Images per second of ``explain_dataset`` (chunks of the library's batched ``explain``, maps
pooled to 32 x 32) against a Captum loop over the same images and method one image at a time
(what a user writes without a dataset path), and against the floor: one batched forward and
backward of plain PyTorch over the same images, with nothing kept. Then what a run keeps in
memory per 1,000 images (maps, probabilities, names; measured on the result object), and the
time to cluster 10,000 maps (``cluster_maps``: kNN graph, eigengap, SpectralClustering).

The same images go through every contender; the first pass of each is a warm-up. The figures
are printed as a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def images_for(n: int):
    from saliency_core.datasets.samples import shapes_watermark

    return shapes_watermark(n).image_set()


def captum_loop(loaded, x: torch.Tensor, method: str) -> None:
    """Captum over the images one at a time: Saliency for the gradient, LayerGradCam (then
    upsampled, as ours are) for Grad-CAM."""
    from captum.attr import LayerAttribution, LayerGradCam, Saliency

    model = loaded.model
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        target = int(model(xi).argmax(1))
        if method == "gradient":
            Saliency(model).attribute(xi, target=target, abs=False)
        else:
            layer = dict(model.named_modules())[loaded.default_layer]
            cam = LayerGradCam(model, layer).attribute(xi, target=target, relu_attributions=True)
            LayerAttribution.interpolate(cam, tuple(xi.shape[-2:]), "bilinear")


def floor(model: torch.nn.Module, x: torch.Tensor, chunk: int) -> None:
    """Batched forward + backward of the predicted class, nothing else."""
    for start in range(0, len(x), chunk):
        xi = x[start:start + chunk].clone().requires_grad_(True)
        logits = model(xi)
        logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()


def kept_bytes(result) -> int:
    names = sum(sys.getsizeof(n) for n in result.names)
    labels = sum(sys.getsizeof(t) for t in result.labels if t is not None)
    return int(result.maps.nbytes + result.probabilities.nbytes + result.predicted.nbytes
               + names + labels + 8 * 3 * len(result))


def synthetic_maps(n: int, side: int = 32, seed: int = 0) -> np.ndarray:
    """n maps from 5 strategies (a blob in one of 5 places) with noise: what clustering meets."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    centres = rng.uniform(0.15, 0.85, (5, 2))
    which = rng.integers(0, 5, n)
    cy, cx = centres[which, 0][:, None, None], centres[which, 1][:, None, None]
    maps = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 0.01)
    return (maps + rng.uniform(0, 0.2, (n, side, side))).astype(np.float32)


def run(model_name: str, device: str, methods: list[str], n: int, repeats: int,
        cluster_n: int) -> dict:
    import saliency_core as sc
    from saliency_core.evaluation import cluster_maps

    loaded = sc.load_model(model_name, device=device)
    images = images_for(n)
    x = torch.cat([loaded.preprocess(images.image(i)) for i in range(n)]).to(device)
    rows = []
    for method in methods:
        log(f"{method}: explain_dataset, Captum loop, floor on {n} images")
        ours = best_of(lambda m=method: sc.explain_dataset(loaded, images, m), repeats)
        captum = best_of(lambda m=method: captum_loop(loaded, x, m), repeats)
        bottom = best_of(lambda: floor(loaded.model, x, 32), repeats)
        rows.append({"method": method, "ours": n / ours, "captum": n / captum, "floor": n / bottom})
    result = sc.explain_dataset(loaded, images, methods[0])
    per_thousand = kept_bytes(result) / n * 1000
    classes = len(loaded.labels)
    imagenet_per_thousand = per_thousand + 1000 * 4 * (1000 - classes)  # 1,000 probabilities
    maps = synthetic_maps(cluster_n)
    start = time.perf_counter()
    clusters = cluster_maps(maps)
    cluster_s = time.perf_counter() - start
    return {"model": model_name, "device": device, "n": n, "rows": rows,
            "kept_per_1000": per_thousand, "kept_per_1000_imagenet": imagenet_per_thousand,
            "cluster_n": cluster_n, "cluster_s": cluster_s, "clusters": clusters.n_clusters}


def markdown(r: dict) -> str:
    lines = [(f"`{r['model']}` on {r['device']}, {r['n']} images of the shapes-watermark sample "
             "(images per second, best of the repeats):"), "",
             "| method | explain_dataset | Captum, one image at a time | floor (batched forward + backward) |",
             "|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['method']} | {row['ours']:.0f} | {row['captum']:.0f} | {row['floor']:.0f} |")
    lines += ["",
              (f"Memory kept per 1,000 images (32 x 32 maps, probabilities, names): "
              f"{r['kept_per_1000'] / 2**20:.2f} MiB for {r['model']}; "
              f"{r['kept_per_1000_imagenet'] / 2**20:.2f} MiB for a 1,000-class model. "),
              (f"Clustering {r['cluster_n']:,} maps (32 x 32, `cluster_maps`, eigengap chose "
              f"{r['clusters']}): {r['cluster_s']:.1f} s.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes-cnn")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default="gradient,gradcam")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cluster-maps", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true",
                        help="240 images, 2 repeats, 10,000 maps clustered (a few minutes on a CPU)")
    args = parser.parse_args(argv)
    n, repeats = (240, 2) if args.quick else (args.images, args.repeats)
    torch.manual_seed(0)
    r = run(args.model, args.device, args.methods.split(","), n, repeats, args.cluster_maps)
    print(markdown(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
