"""Which method runs on which family of image classifier, with no layer or reshape given.

Every family is built offline from a tiny configuration with random weights (nothing is
downloaded), given a non-square input where the family accepts one, and explained by every
image method with default settings (small step and sample counts). A cell says whether the
method ran and how long it took, or why it does not apply; each row names the default CAM layer
the workbench picked from the model's own structure.

    python -m benchmarks.coverage                  # every family -> docs/coverage.md
    python -m benchmarks.coverage --families hf-vit,timm-swin --stdout
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import saliency_core as sc
from saliency_core.errors import SaliencyError

DOC = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"
H, W = 64, 96  # non-square where the family allows
# Small counts: the table is about what runs, not about converged maps.
PARAMS = {"integrated_gradients": {"steps": 4}, "smoothgrad": {"samples": 2}}


@dataclass(frozen=True)
class Family:
    name: str
    library: str
    build: Callable[[], torch.nn.Module]
    size: tuple[int, int] = (H, W)


def _hf(config_name: str, architecture: str | None = None, **fields) -> Callable:
    def build():
        import transformers

        config = getattr(transformers, config_name)(num_labels=5, **fields)
        if architecture:
            config.architectures = [architecture]
        return transformers.AutoModelForImageClassification.from_config(
            config, attn_implementation="eager"
        )

    return build


def _hf_cnn(config_name: str, **fields) -> Callable:
    def build():
        import transformers

        config = getattr(transformers, config_name)(num_labels=5, **fields)
        return transformers.AutoModelForImageClassification.from_config(config)

    return build


def _timm(arch: str, **kwargs) -> Callable:
    def build():
        import timm

        return timm.create_model(arch, pretrained=False, num_classes=5, **kwargs)

    return build


def _torchvision(builder: str, **kwargs) -> Callable:
    def build():
        from torchvision import models

        return getattr(models, builder)(num_classes=5, **kwargs)

    return build


VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 64, "patch_size": 16}  # fmt: skip
HF_SIZE = {"image_size": (H, W)}
# Swin and Swinv2 take the same small shape.
SWIN = {"embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4}
FAMILIES = [
    Family("hf-vit", "Hugging Face", _hf("ViTConfig", **VIT, **HF_SIZE)),
    Family(
        "hf-deit",
        "Hugging Face",
        _hf("DeiTConfig", "DeiTForImageClassificationWithTeacher", **VIT, **HF_SIZE),
    ),
    Family("hf-beit", "Hugging Face", _hf("BeitConfig", **VIT, **HF_SIZE)),
    Family(
        "hf-dinov2", "Hugging Face", _hf("Dinov2Config", **VIT, image_size=64), (64, 64)
    ),
    Family(
        "hf-dinov2-registers",
        "Hugging Face",
        _hf("Dinov2WithRegistersConfig", **VIT, image_size=64, num_register_tokens=4),
        (64, 64),
    ),
    Family(
        "hf-swin",
        "Hugging Face",
        _hf("SwinConfig", **SWIN, **HF_SIZE),
    ),
    Family(
        "hf-swinv2",
        "Hugging Face",
        _hf("Swinv2Config", **SWIN, **HF_SIZE),
    ),
    Family(
        "hf-convnext",
        "Hugging Face",
        _hf_cnn("ConvNextConfig", hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1]),
    ),
    Family(
        "hf-convnextv2",
        "Hugging Face",
        _hf_cnn("ConvNextV2Config", hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1]),
    ),
    Family(
        "hf-resnet",
        "Hugging Face",
        _hf_cnn("ResNetConfig", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    ),
    Family(
        "hf-regnet",
        "Hugging Face",
        _hf_cnn(
            "RegNetConfig",
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            groups_width=8,
        ),
    ),
    Family(
        "hf-efficientnet",
        "Hugging Face",
        _hf_cnn(
            "EfficientNetConfig",
            image_size=64,
            width_coefficient=0.25,
            depth_coefficient=0.25,
            hidden_dim=320,  # round_filters(1280) at this width: the head's BatchNorm size
        ),
    ),
    Family(
        "hf-mobilevit",
        "Hugging Face",
        _hf(
            "MobileViTConfig",
            image_size=64,
            hidden_sizes=[16, 16, 16],
            neck_hidden_sizes=[8, 8, 8, 8, 8, 8, 16],
        ),
    ),
    Family(
        "hf-levit",
        "Hugging Face",
        _hf(
            "LevitConfig",
            "LevitForImageClassification",
            image_size=128,  # LeViT shrinks 16x then 4x: at 64 its last stage is 1 token
            hidden_sizes=[16, 32, 48],
            num_attention_heads=[1, 2, 3],
            depths=[1, 1, 1],
            key_dim=[8, 8, 8],
        ),
        (128, 128),
    ),
    Family(
        "hf-pvt-v2",
        "Hugging Face",
        _hf(
            "PvtV2Config",
            hidden_sizes=[8, 16, 16, 16],
            depths=[1, 1, 1, 1],
            num_attention_heads=[1, 1, 1, 1],
        ),
    ),
    Family("timm-vit", "timm", _timm("vit_tiny_patch16_224", img_size=(H, W), depth=2)),
    Family(
        "timm-deit-distilled",
        "timm",
        _timm("deit_tiny_distilled_patch16_224", img_size=(H, W), depth=2),
    ),
    Family(
        "timm-vit-registers",
        "timm",
        _timm("vit_small_patch14_reg4_dinov2", img_size=(70, 98), depth=2),
        (70, 98),
    ),
    Family(
        "timm-swin",
        "timm",
        _timm(
            "swin_tiny_patch4_window7_224",
            img_size=(H, W),
            window_size=4,
            depths=(1, 1, 1, 1),
            embed_dim=24,
        ),
    ),
    Family("timm-convnext", "timm", _timm("convnext_atto")),
    Family(
        "torchvision-vit",
        "torchvision",
        _torchvision(
            "VisionTransformer",
            image_size=64,
            patch_size=16,
            num_layers=2,
            num_heads=2,
            hidden_dim=32,
            mlp_dim=64,
        ),
        (64, 64),
    ),
    Family(
        "torchvision-swin",
        "torchvision",
        _torchvision(
            "SwinTransformer",
            patch_size=[4, 4],
            embed_dim=16,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=[4, 4],
        ),
    ),
    Family("torchvision-resnet18", "torchvision", _torchvision("resnet18")),
]
# The subset the default test tier builds (one of each kind of geometry).
REPRESENTATIVE = [
    "hf-vit",
    "hf-deit",
    "hf-swin",
    "hf-convnext",
    "timm-vit",
    "torchvision-vit",
]


@dataclass
class Cell:
    ok: bool
    seconds: float
    note: str = ""


@dataclass
class Row:
    family: Family
    default_layer: str
    cells: dict[str, Cell]


def image_methods() -> list[str]:
    return [s.name for s in sc.methods() if s.family in ("input", "cam")]


def run_family(family: Family, methods: list[str]) -> Row:
    from saliency_core.engine.layers import default_layer

    torch.manual_seed(0)
    model = family.build().eval()
    x = torch.rand(1, 3, *family.size, generator=torch.Generator().manual_seed(1))
    try:
        layer = default_layer(model, x)
    except (SaliencyError, RuntimeError) as exc:
        layer = f"none ({str(exc).splitlines()[0][:120]})"
    cells = {}
    for method in methods:
        started = time.perf_counter()
        try:
            sc.explain(model, x, method, **PARAMS.get(method, {}))
        except SaliencyError as exc:
            cells[method] = Cell(
                False, time.perf_counter() - started, str(exc).split(";")[0]
            )
        else:
            cells[method] = Cell(True, time.perf_counter() - started)
    return Row(family, layer, cells)


def coverage(
    families: list[str] | None = None, methods: list[str] | None = None
) -> list[Row]:
    """The table's rows for ``families`` (names of FAMILIES; all by default)."""
    chosen = [f for f in FAMILIES if families is None or f.name in families]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [run_family(f, methods or image_methods()) for f in chosen]


def markdown(rows: list[Row]) -> str:
    methods = list(rows[0].cells) if rows else []
    labels = {s.name: s.label for s in sc.methods()}
    notes: dict[str, int] = {}
    lines = [
        "| family | library | input | default CAM layer | "
        + " | ".join(labels[m] for m in methods)
        + " |",
        "|" + "---|" * (4 + len(methods)),
    ]
    for row in rows:
        cells = []
        for method in methods:
            cell = row.cells[method]
            if cell.ok:
                cells.append(f"✓ {cell.seconds:.2f} s")
            else:
                number = notes.setdefault(cell.note, len(notes) + 1)
                cells.append(f"— [{number}]")
        h, w = row.family.size
        lines.append(
            f"| {row.family.name} | {row.family.library} | {h}×{w} | "
            f"`{row.default_layer}` | " + " | ".join(cells) + " |"
        )
    lines.append("")
    lines += [f"[{n}] {note}" + "  " for note, n in notes.items()]
    return "\n".join(lines) + "\n"


HEADER = """# Coverage: which method runs on which model

Generated by `python -m benchmarks.coverage` (tests/test_bench_coverage.py builds a subset of
it on every test run). Each family is built offline from a tiny configuration with random
weights, given the input size shown (non-square where the family accepts one) and explained by
every image method **with no layer, reshape or other setting given**. ✓ is the wall time of
one `explain` call (the first on that model, one-time checks included) on the machine that
wrote the table: CPU, tiny models, and a 2-core machine shared with other jobs, so the times are
upper bounds that say "runs in seconds", not a benchmark; — says why a method does not apply (the notes under the table
are the library's own messages). The default CAM layer is what the workbench picks from the
model's own structure: for transformers with class, distillation or register tokens the first
norm of the last block, otherwise the deepest layer whose output lies over the image.

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families", help="comma-separated family names (default: all)"
    )
    parser.add_argument(
        "--stdout", action="store_true", help="print instead of writing the doc"
    )
    args = parser.parse_args(argv)
    families = args.families.split(",") if args.families else None
    started = time.perf_counter()
    text = HEADER + markdown(coverage(families))
    text += f"\nBuilt in {time.perf_counter() - started:.0f} s, torch {torch.__version__}.\n"
    if args.stdout:
        print(text)
    else:
        DOC.write_text(text)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
