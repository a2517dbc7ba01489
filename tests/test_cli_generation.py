"""``saliency explain`` on a language model fetched through the mirror path: --generate and
--continuation, the report with the matrix, the JSON/npz/PNG results, and clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.hub_mirror import HubMirror
from support.tiny_lm import save_tiny_gpt2

from saliency_core.cli import main
from saliency_core.models import hf_lm


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """The zoo's gpt2, fetched once into a cache of this module's own from a local mirror that
    serves a tiny stand-in."""
    from saliency_core.models import forget_loaded

    folder = tmp_path_factory.mktemp("upstream")
    save_tiny_gpt2(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SALIENCY_CACHE", str(tmp_path_factory.mktemp("cache")))
        forget_loaded()
        with HubMirror() as mirror:
            mirror.repos["openai-community/gpt2"] = {p.name: p.read_bytes() for p in folder.iterdir()}
            patch.setenv("HF_ENDPOINT", mirror.url)
            hf_lm.fetch("gpt2")
        patch.delenv("HF_ENDPOINT")
        yield "gpt2"
        forget_loaded()


def test_generate_writes_matrices_and_a_report(gpt2, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", "--model", gpt2, "--generate", "3", "--method",
                 "gradient_x_input,integrated_gradients", "--steps", "4", "--no-progress",
                 "the cat sat on", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "s1.integrated_gradients.json").read_text())
    assert len(doc["generated_tokens"]) == 3 and doc["params"]["steps"] == 4
    assert doc["target"] == {"score": "log_prob", "rather_than": None}
    with np.load(out / "s1.gradient_x_input.npz", allow_pickle=False) as npz:
        assert npz["matrix"].shape == (3, doc["prompt_length"] + 3)
    assert (out / "s1.gradient_x_input.png").read_bytes()[1:4] == b"PNG"
    report = (out / "report.html").read_text()
    assert report.count('class="saliency-generation"') == 2 and "data:image/png;base64," in report
    assert "log_prob of each generated token" in report


def test_continuation_and_contrast_to_one_file(gpt2, tmp_path, capsys):
    out = tmp_path / "paris.json"
    code = main(["explain", "--model", gpt2, "--continuation", " the mat", "--rather-than", " dog",
                 "--score", "logit", "--method", "integrated_gradients", "--steps", "8",
                 "--no-progress", "--all", "the cat sat on", "--out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert "".join(doc["generated_tokens"]) == " the mat"
    assert doc["target"] == {"score": "logit", "rather_than": " dog"}
    assert out.with_suffix(".npz").is_file()
    printed = capsys.readouterr().out
    assert "explained 2 tokens" in printed and "completeness" in printed


def test_bad_flags_are_refused_clearly(gpt2, tmp_path, capsys):
    for argv, message in [(["--generate", "2", "--continuation", " x"], "not both"),
                          (["--target", "3"], "--score"),
                          (["--generate", "0"], "max_new_tokens"),
                          (["--method", "gradcam"], "does not explain generated tokens")]:
        code = main(["explain", "--model", gpt2, *argv, "--no-progress", "the cat",
                     "--out", str(tmp_path / "one.json")])
        assert code != 0
        assert message in capsys.readouterr().err


def test_generation_flags_on_a_classifier_are_refused(tmp_path, capsys):
    code = main(["explain", "--model", "minilm-sentiment", "--generate", "3", "a fine film",
                 "--out", str(tmp_path / "o.json")])
    assert code != 0 and "apply to language models" in capsys.readouterr().err
