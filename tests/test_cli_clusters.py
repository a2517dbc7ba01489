"""``saliency explain --clusters``: the report of a folder of images gains its strategies, the
maps of each predicted class clustered, with the planted watermark's cluster marked."""

from __future__ import annotations

import re

import pytest

from saliency_core.cli import main
from saliency_core.datasets.samples import shapes_watermark


@pytest.mark.long  # `make test-dataset`
def test_clusters_are_added_to_the_report(tmp_path, capsys):
    folder = shapes_watermark(90).write_folder(tmp_path / "data")
    out = tmp_path / "out"
    code = main(["explain", str(folder / "square"), "--model", "shapes-cnn-watermark",
                 "--method", "gradcam", "--out", str(out), "--clusters", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    page = (out / "report.html").read_text()
    assert "<h2>Strategies</h2>" in page
    assert page.count('class="row cluster"') >= 2
    # The stamped squares are predicted "square" and explained by the corner.
    square = re.findall(r'alt="square · cluster \d+".*?</div></div>', page)
    assert any("looks at the corners or border" in block for block in square)


def test_clusters_need_a_folder_report(tmp_path, capsys):
    image = shapes_watermark(6).write_folder(tmp_path / "d")
    one = next((image / "square").glob("*.png"), None) or next(image.rglob("*.png"))
    assert main(["explain", str(one), "--model", "shapes-cnn", "--out", str(tmp_path / "x.png"),
                 "--clusters"]) != 0
    assert "--clusters needs images and a folder" in capsys.readouterr().err
