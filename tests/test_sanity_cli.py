"""``python -m saliency_core sanity`` end to end, on small untrained models registered under
their own names (the bundled pair is exercised in test_sanity_bundled.py)."""

import pytest
import torch

from saliency_core.cli import main
from saliency_core.models.base import LoadedModel
from saliency_core.models.registry import (
    ModelInfo,
    register_uploaded,
    unregister_uploaded,
)
from saliency_core.training.shapes_cnn import MEAN, STD, ShapesCNN

NAMES = ("cli-sanity-net", "cli-sanity-shuffled")


def _factory(seed):
    def build(device):
        import numpy as np

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = ShapesCNN(num_classes=6, widths=(4, 8, 8, 16)).to(device).eval()
        mean_t = torch.tensor(MEAN).view(1, 3, 1, 1)
        std_t = torch.tensor(STD).view(1, 3, 1, 1)

        def preprocess(image):
            x = torch.from_numpy(np.asarray(image.convert("RGB").resize((32, 32)), dtype=np.float32) / 255)
            return ((x.permute(2, 0, 1)[None] - mean_t) / std_t).to(device)

        return LoadedModel(name=NAMES[seed], task="image", model=net, labels=list("abcdef"),
                           preprocess=preprocess, normalization=(MEAN, STD), input_size=(32, 32),
                           default_layer="features.block5", source="uploaded")

    return build


@pytest.fixture
def registered():
    for seed, name in enumerate(NAMES):
        register_uploaded(ModelInfo(name, "image", "uploaded", True, None, "test net"), _factory(seed))
    yield
    for name in NAMES:
        unregister_uploaded(name)


def test_sanity_prints_and_writes_the_table(registered, tmp_path, capsys):
    out = tmp_path / "docs" / "SANITY.md"
    rc = main(["sanity", "--model", NAMES[0], "--random-labels-model", NAMES[1],
               "--methods", "gradient", "gradcam", "--samples", "2", "--seed", "3",
               "--device", "cpu", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert text.strip() == printed.strip()
    assert "| `gradient` |" in text and "| `gradcam` |" in text
    assert "generate(2, seed=7003)" in text and "Randomization seed: 3" in text
    assert f"--random-labels-model {NAMES[1]}" in text
    assert "threshold is **0.5**" in text
    rows = [line.strip("|").split("|") for line in text.splitlines() if line.startswith("| `grad")]
    verdict_rows = [r for r in rows if len(r) == 12]  # method, cascade mean, 4 + verdict, 4 + verdict
    step_rows = [r for r in rows if len(r) == 7]  # method and the 6 cascade steps
    assert len(verdict_rows) == 2 and len(step_rows) == 2 and len(rows) == 4
    for r in verdict_rows:
        assert ("passes" in r[6] or "fails" in r[6]) and ("passes" in r[11] or "fails" in r[11])


def test_sanity_draws_the_maps_figure(registered, tmp_path):
    from PIL import Image

    figure = tmp_path / "cascade.png"
    rc = main(["sanity", "--model", NAMES[0], "--random-labels-model", NAMES[1],
               "--methods", "gradient", "--samples", "1", "--device", "cpu", "--out", "-",
               "--figure", str(figure)])
    assert rc == 0
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.width > img.height  # one row of 8 panels


def test_sanity_without_a_shuffled_model_skips_the_data_test(registered, capsys):
    rc = main(["sanity", "--model", NAMES[0], "--methods", "gradient", "--samples", "1",
               "--device", "cpu", "--out", "-"])
    assert rc == 0
    assert "Data randomization: no shuffled-label model" in capsys.readouterr().out


def test_bad_choices_give_a_message_not_a_traceback(registered, capsys):
    assert main(["sanity", "--model", NAMES[0], "--methods", "lime", "--out", "-"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["sanity", "--model", "no-such-model", "--out", "-"]) == 2
    assert "no model called" in capsys.readouterr().err
    assert main(["sanity", "--model", NAMES[0], "--samples", "0", "--out", "-"]) == 2
    assert "samples" in capsys.readouterr().err
