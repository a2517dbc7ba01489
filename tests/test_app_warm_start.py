"""Warm start (python -m workbench.serve): the models are loaded into the very cache the pages
read, so the first visitor finds them in memory; SALIENCY_WARM_MODELS picks them."""

from __future__ import annotations

import saliency_core.models as sc_models
from workbench import serve
from workbench.jobs import models


def test_warm_up_fills_the_cache_the_pages_use(monkeypatch):
    monkeypatch.setenv(serve.WARM_MODELS_ENV, "shapes-cnn, no-such-model")
    models.model_pool().clear()
    timings = serve.warm_up()
    assert set(timings) == {"imports_s", "shapes-cnn_s"}
    loads = []
    monkeypatch.setattr(sc_models, "load_model", lambda *a, **k: loads.append(a))
    assert models.get_model("shapes-cnn", "cpu").name == "shapes-cnn"
    assert loads == [], "the page loaded the model again after the warm start"


def test_default_warm_models_are_each_tasks_default(monkeypatch):
    monkeypatch.delenv(serve.WARM_MODELS_ENV, raising=False)
    present = [m for m in sc_models.available_models() if m.present]
    names = serve.warm_models(present, models.default_model)
    image = models.default_model("image", [m.name for m in present if m.task == "image"])
    assert names[0] == image and len(names) == 2
    monkeypatch.setenv(serve.WARM_MODELS_ENV, "")
    assert serve.warm_models(present, models.default_model) == []
