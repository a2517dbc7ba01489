"""`python -m saliency_core explain` end to end, on small models registered by the test."""

import json

import numpy as np
import pytest
import torch
from engine_models import make_tiny_text_model, small_cnn
from PIL import Image

from saliency_core.cli import main
from saliency_core.models.base import LoadedModel
from saliency_core.models.registry import ModelInfo, register_uploaded


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    cnn = small_cnn()
    labels = ["circle", "square", "triangle", "cross", "star"]

    def image_factory(device):
        def preprocess(img):
            arr = np.asarray(img.convert("RGB").resize((16, 16)), dtype=np.float32) / 255
            return torch.from_numpy(arr).permute(2, 0, 1)[None].to(device)

        return LoadedModel(name="cli-cnn", kind="image", model=cnn.to(device), labels=labels,
                           preprocess=preprocess, input_size=(16, 16), source="uploaded")

    text_model, tok = make_tiny_text_model(tmp_path_factory.mktemp("tok"))

    def text_factory(device):
        return LoadedModel(name="cli-bert", kind="text", model=text_model.to(device),
                           labels=["negative", "positive"], tokenizer=tok, source="uploaded")

    register_uploaded(ModelInfo("cli-cnn", "image", "uploaded", True, None, "test"), image_factory)
    register_uploaded(ModelInfo("cli-bert", "text", "uploaded", True, None, "test"), text_factory)
    image = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8)).save(image)
    return image


def test_explain_image_writes_overlay_raw_and_record(registered, tmp_path, capsys):
    out = tmp_path / "ig.png"
    code = main(["explain", str(registered), "--model", "cli-cnn", "--method", "integrated_gradients",
                 "--steps", "8", "--baseline", "white", "--target", "square", "--out", str(out), "--all",
                 "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "completeness" in printed and "explained: square" in printed
    assert Image.open(out).size == (16, 16)
    raw = np.load(tmp_path / "ig.npz")
    assert raw["attribution"].shape == (3, 16, 16)
    record = json.loads((tmp_path / "ig.json").read_text())
    assert record["method"] == "integrated_gradients" and record["params"]["steps"] == 8
    assert record["params"]["baseline"] == "white" and record["target"] == [1]
    assert abs(sum(record["completeness_delta"])) < abs(record["f_x"][0] - record["f_baseline"][0])


def test_explain_text_writes_html_and_json(registered, tmp_path, capsys):
    out = tmp_path / "t.html"
    code = main(["explain", "the film was great", "--model", "cli-bert", "--method", "smoothgrad",
                 "--samples", "3", "--base", "gradient_x_input", "--out", str(out), "--all", "--device", "cpu"])
    assert code == 0
    assert "great" in out.read_text()
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["aggregation"] == "sum" and record["params"]["base"] == "gradient_x_input"
    assert np.load(tmp_path / "t.npz")["scores"].shape == (6,)


def test_explain_reports_bad_choices_clearly(registered, tmp_path, capsys):
    assert main(["explain", str(registered), "--model", "cli-cnn", "--method", "gradient", "--steps", "4",
                 "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "gradient does not use --steps" in capsys.readouterr().err
    assert main(["explain", str(registered), "--model", "cli-cnn", "--target", "zebra",
                 "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "unknown target 'zebra'" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "missing.png"), "--model", "cli-cnn",
                 "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "no such image file" in capsys.readouterr().err
