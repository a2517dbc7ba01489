"""models_cache/ is in every clone with a README saying what goes there, its downloads stay out
of git, and nothing that lists the cache takes the README for a model."""

from __future__ import annotations

import shutil

from support.browser import REPO_ROOT

from saliency_core.models import (
    available_models,
    deployment_source,
    forget_loaded,
    timm_zoo,
)
from saliency_core.models.cache import hf_hub_dir

README = REPO_ROOT / "models_cache" / "README.md"


def test_the_cache_folder_ships_with_its_readme_only():
    assert README.is_file() and "saliency_core/weights" in README.read_text()
    rules = (REPO_ROOT / ".gitignore").read_text().split()
    assert "models_cache/*" in rules and "!models_cache/README.md" in rules
    # The image builds its own empty cache: nothing of a checkout's cache goes into it.
    assert "models_cache" in (REPO_ROOT / ".dockerignore").read_text().split()


def test_a_readme_in_the_cache_is_not_a_model(temp_cache, tmp_path, monkeypatch):
    before = available_models()
    for folder in (temp_cache, temp_cache / "timm", hf_hub_dir()):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(README, folder / "README.md")
    assert available_models() == before and timm_zoo.cached_names() == []

    # A deployment's model source is often a copy of a cache folder, README included.
    monkeypatch.setenv(deployment_source.SOURCE_ENV, str(temp_cache))
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path / "empty"))
    deployment_source.forget_listing()
    forget_loaded()
    try:
        assert "README.md" in deployment_source.listing()
        assert [m.present for m in available_models()] == [m.present for m in before]
    finally:
        deployment_source.forget_listing()

