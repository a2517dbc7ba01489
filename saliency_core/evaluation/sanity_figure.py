"""The sanity report's figure: one input's maps as the layers are randomized."""

from __future__ import annotations

from pathlib import Path

from saliency_core.errors import SaliencyError
from saliency_core.evaluation.sanity_report import Report


def write_figure(report: Report, path, sample: int = 0) -> Path:
    """A PNG grid of one input's maps: a row per method, the original map, each cascade step
    and (when run) the shuffled-label model's map; each map scaled to its own 99th percentile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saliency_core import render

    c, d = report.cascade, report.data
    if not c.maps:
        raise SaliencyError("the report was computed without keeping maps")
    cols = len(c.steps) + (1 if d is not None and d.maps else 0)
    fig, axes = plt.subplots(len(c.methods), cols, figsize=(1.3 * cols, 1.45 * len(c.methods)),
                             squeeze=False)
    for r, m in enumerate(c.methods):
        panels = [ms.abs[sample] for ms in c.maps[m]]
        titles = ["original"] + [s.lstrip("+ ").split(".")[-1] for s in c.steps[1:]]
        if cols > len(c.steps) and d is not None:
            panels.append(d.maps[m][1].abs[sample])
            titles.append("shuffled labels")
        for k, (panel, title) in enumerate(zip(panels, titles)):
            ax = axes[r, k]
            ax.imshow(render.colorize(render.normalize(panel, "absolute", 99.0)))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(m, fontsize=7)
    fig.suptitle(f"{report.model}: maps as the layers are randomized from the logits down "
                 f"(seed {report.seed})", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
