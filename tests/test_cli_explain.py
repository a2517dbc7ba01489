"""`python -m saliency_core explain` end to end, on small models registered by the test."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from support.engine_models import make_tiny_text_model, small_cnn

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

        return LoadedModel(name="cli-cnn", task="image", model=cnn.to(device), labels=labels,
                           preprocess=preprocess, input_size=(16, 16), source="uploaded")

    text_model, tok = make_tiny_text_model(tmp_path_factory.mktemp("tok"))

    def text_factory(device):
        return LoadedModel(name="cli-bert", task="text", model=text_model.to(device),
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


def test_unknown_out_extension_fails_before_any_work(registered, tmp_path, capsys):
    assert main(["explain", str(registered), "--model", "cli-cnn", "--out", str(tmp_path / "x.jpg"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown extension '.jpg'" in err and "wrote" not in err
    assert not list(tmp_path.iterdir())


def test_image_path_given_to_a_text_model_is_an_error(registered, tmp_path, capsys):
    assert main(["explain", str(registered), "--model", "cli-bert", "--out", str(tmp_path / "t.html"),
                 "--device", "cpu"]) == 2
    assert "is a text model" in capsys.readouterr().err
    assert not (tmp_path / "t.html").exists()


def test_target_and_method_names_suggest_close_matches(registered, tmp_path, capsys):
    assert main(["explain", str(registered), "--model", "cli-cnn", "--target", "sqare",
                 "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "Did you mean 'square'" in capsys.readouterr().err
    assert main(["explain", str(registered), "--model", "cli-cnn", "--method", "gradcamm",
                 "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "Did you mean 'gradcam'" in capsys.readouterr().err


def test_several_inputs_need_a_folder_for_out(registered, tmp_path, capsys):
    assert main(["explain", str(registered), str(registered), "--model", "cli-cnn",
                 "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "give a folder for --out" in capsys.readouterr().err


def _photos(folder, n):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_folder_of_images_gives_one_result_each_and_an_offline_report(registered, tmp_path, capsys):
    photos = _photos(tmp_path / "photos", 3)
    (photos / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "results"
    code = main(["explain", str(photos), "--model", "cli-cnn", "--method", "gradient,gradcam",
                 "--method", "integrated_gradients", "--steps", "4", "--out", str(out), "--device", "cpu"])
    assert code == 2  # broken.png failed; the three others are still written
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "100%" in captured.err  # the error and the progress bar
    for i in range(3):
        record = json.loads((out / f"im{i}.json").read_text())
        assert set(record["methods"]) == {"gradient", "gradcam", "integrated_gradients"}
        assert record["methods"]["integrated_gradients"]["params"]["steps"] == 4
        assert len(record["top"]) == 5 and record["top"][0]["probability"] >= record["top"][1]["probability"]
        raw = np.load(out / f"im{i}.npz")
        assert raw["gradient"].shape == (3, 16, 16) and raw["gradcam"].shape == (16, 16)
        assert Image.open(out / f"im{i}.gradcam.png").size == (16, 16)
    report = (out / "report.html").read_text()
    assert report.count("<section") == 4 and report.count('src="data:image/png;base64,') == 3 * 4
    assert "http://" not in report and "https://" not in report  # opens offline
    assert "4 inputs, 1 failed" in report


def test_glob_selects_images(registered, tmp_path, capsys):
    photos = _photos(tmp_path / "photos", 2)
    out = tmp_path / "r"
    assert main(["explain", str(photos / "im1.*"), "--model", "cli-cnn", "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["im1.json"]


def test_file_of_sentences_gives_one_result_per_line(registered, tmp_path, capsys):
    sentences = tmp_path / "s.txt"
    sentences.write_text("the film was great\n\na dull <b>lifeless</b> film\n")
    out = tmp_path / "text"
    assert main(["explain", f"@{sentences}", "--model", "cli-bert", "--method", "gradient,gradient_x_input",
                 "--target", "positive", "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "s1.json").read_text())["target_label"] == "positive"
    assert json.loads((out / "s2.json").read_text())["input"] == "a dull <b>lifeless</b> film"
    report = (out / "report.html").read_text()
    assert report.count('class="token-saliency"') == 4 and "<b>lifeless" not in report
