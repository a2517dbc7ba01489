"""Hugging Face image classifiers on the Image page with nothing set but the model's name: a
ViT, a DeiT, a Swin, a ConvNeXt and a DINOv2 (tiny random-weight checkpoints the test writes)
are fetched through the HF_ENDPOINT mirror, listed, and explained on the page; the page offers
exactly the methods that run on each, and every one of them runs with its defaults."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from support.apptest import run_app_page
from support.browser import REPO_ROOT
from support.hub_mirror import HubMirror

import saliency_core as sc
from saliency_core.cli import main as cli_main
from saliency_core.methods import applicable_to
from saliency_core.models import forget_loaded, load_model
from workbench.jobs import compute

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("temp_cache", "native_guided_rule"),
]

PAGE = str(REPO_ROOT / "pages" / "image.py")
PROCESSOR = {"do_resize": True, "size": {"height": 64, "width": 64}, "do_normalize": True,
             "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2}  # fmt: skip
VIT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 64, "patch_size": 16, "image_size": 64}  # fmt: skip
CONFIGS = {
    "org/tiny-vit": lambda: transformers.ViTConfig(**VIT),
    "org/tiny-deit": lambda: transformers.DeiTConfig(
        **VIT, architectures=["DeiTForImageClassificationWithTeacher"]),
    "org/tiny-swin": lambda: transformers.SwinConfig(embed_dim=16, depths=[1, 1],
                                                     num_heads=[2, 2], window_size=4,
                                                     image_size=64),
    "org/tiny-convnext": lambda: transformers.ConvNextConfig(hidden_sizes=[8, 8, 16, 16],
                                                             depths=[1, 1, 1, 1]),
    "org/tiny-dinov2": lambda: transformers.Dinov2Config(**VIT),
}  # fmt: skip
ATTENTION = {"org/tiny-vit", "org/tiny-deit", "org/tiny-dinov2"}


def checkpoint(repo: str, folder) -> dict[str, bytes]:
    config = CONFIGS[repo]()
    config.num_labels = 3
    config.id2label = {0: "apple", 1: "pear", 2: "plum"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(0)
    model = transformers.AutoModelForImageClassification.from_config(config)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream")
    return {repo: checkpoint(repo, root / repo.replace("/", "--")) for repo in CONFIGS}


# The ViT case runs on every `make test`; the other families (about 30 s each) with the long
# tests of `make test-vit`.
REPOS = [repo if repo == "org/tiny-vit" else pytest.param(repo, marks=pytest.mark.long)
         for repo in CONFIGS]


@pytest.mark.parametrize("repo", REPOS)
def test_a_fetched_hub_classifier_is_explained_on_the_image_page(
    repo, written, monkeypatch
):
    name = "hf:" + repo
    with HubMirror() as mirror:
        mirror.repos[repo] = written[repo]
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        assert cli_main(["fetch", name]) == 0
    forget_loaded()
    compute.result_cache.clear()
    at = run_app_page(PAGE, {"model": name})
    assert at.session_state["image.model"] == name
    offered = at.sidebar.selectbox(key="image.method").options
    loaded = load_model(name, "cpu")
    usable = applicable_to(loaded.model)
    assert len(offered) == len(usable)
    assert ("Attention rollout" in offered) == (repo in ATTENTION)
    assert at.get("plotly_chart"), "the heatmap was drawn"
    # Every offered method runs on the page's input with its defaults and no layer given.
    x = loaded.preprocess(__import__("PIL.Image").Image.new("RGB", (80, 60), "white"))
    for method in usable:
        params = (
            {"steps": 4}
            if method == "integrated_gradients"
            else ({"samples": 2} if method == "smoothgrad" else {})
        )
        assert sc.attribute(loaded, x, method, **params).shape[-2:] == (64, 64), method
