"""Model families behind one protocol (saliency_core/models/source.py): every registered source
satisfies it, the catalogue is their listings end to end, and a new family shows up in the
catalogue, load_model and the CLI by being registered, nothing else."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest
import torch

from saliency_core.cli.models import register
from saliency_core.errors import ModelUnavailableError
from saliency_core.models import LoadedModel, available_models, load_model, registry
from saliency_core.models.base import ModelInfo
from saliency_core.models.source import ModelSource

pytestmark = pytest.mark.usefixtures("temp_cache")  # tests/conftest.py

PROTOCOL_METHODS = ["builtin_names", "names", "owns", "info", "load", "nothing_to_fetch", "fetch"]


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.mark.parametrize("source", registry.SOURCES, ids=lambda s: type(s).__name__)
def test_every_registered_source_satisfies_the_protocol(source):
    assert isinstance(source, ModelSource)
    assert isinstance(source.downloads, bool)
    for method in PROTOCOL_METHODS:
        expected = list(inspect.signature(getattr(ModelSource, method)).parameters)[1:]
        assert list(inspect.signature(getattr(source, method)).parameters) == expected, method
    names = source.names()
    assert set(source.builtin_names()) <= set(names)
    for name in names:
        info = source.info(name)
        assert source.owns(name) and info.name == name
        assert info.task in ("image", "text", "text-generation") and info.description
        assert registry.source_of(name) is source


def test_the_catalogue_is_the_sources_listings_in_order():
    expected = [source.info(name) for source in registry.SOURCES for name in source.names()]
    assert available_models() == expected
    assert registry.builtin_names() == [
        name for source in registry.SOURCES for name in source.builtin_names()
    ]


class ToySource:
    """A family written the way models/source.py says a new one is written."""

    downloads = True
    PREFIX = "toy:"

    def __init__(self):
        self.fetched: list[str] = []

    def builtin_names(self) -> list[str]:
        return ["toy:one"]

    def names(self, owner: str | None = None) -> list[str]:
        return ["toy:one", "toy:two"]

    def owns(self, name: str) -> bool:
        return name.startswith(self.PREFIX)

    def info(self, name: str) -> ModelInfo:
        return ModelInfo(name, "image", "zoo", name == "toy:one", 123, f"toy model {name}")

    def load(self, name: str, device: torch.device) -> LoadedModel:
        if name != "toy:one":
            raise ModelUnavailableError(f"{name} is not here; run: python -m saliency_core "
                                        f"fetch {name}")
        return LoadedModel(name, "image", torch.nn.Linear(2, 2).to(device).eval(), ["a", "b"],
                           source="zoo")

    def nothing_to_fetch(self, name: str) -> str | None:
        return None

    def fetch(self, name: str, progress: bool = True) -> Path:
        self.fetched.append(name)
        return Path("/toy") / name.removeprefix(self.PREFIX)


@pytest.fixture
def toy():
    source = ToySource()
    registry.register_source(source)
    try:
        yield source
    finally:
        registry.unregister_source(source)


def test_a_registered_source_is_listed_loaded_and_fetched(toy, capsys):
    assert isinstance(toy, ModelSource)
    infos = available_models()
    assert [m.name for m in infos[-2:]] == ["toy:one", "toy:two"]
    assert infos[-2] == ModelInfo("toy:one", "image", "zoo", True, 123, "toy model toy:one")

    loaded = load_model("toy:one", device="cpu")
    assert loaded.task == "image" and loaded.labels == ["a", "b"]
    assert load_model("toy:one", device="cpu") is loaded  # shared like every other model
    with pytest.raises(ModelUnavailableError, match="fetch toy:two"):
        load_model("toy:two", device="cpu")
    assert "toy:one" in registry.builtin_names()

    assert run_cli("models") == 0
    rows = capsys.readouterr().out.splitlines()
    assert next(row for row in rows if row.startswith("toy:one ")).split()[1:4] == [
        "image", "zoo", "yes"]
    assert "toy:two" in "\n".join(rows)

    assert run_cli("fetch", "toy:two") == 0
    assert toy.fetched == ["toy:two"]
    assert "toy:two: ready in /toy/two" in capsys.readouterr().out


def test_an_unregistered_source_is_gone_with_its_models():
    source = ToySource()
    registry.register_source(source)
    load_model("toy:one", device="cpu")
    registry.unregister_source(source)
    assert not any(m.name.startswith("toy:") for m in available_models())
    with pytest.raises(ModelUnavailableError, match="no model called 'toy:one'"):
        load_model("toy:one", device="cpu")


def test_bring_your_own_models_cannot_be_fetched(capsys):
    registry.register_uploaded(
        ModelInfo("byo-net", "image", "uploaded", True, 0, "test"),
        lambda device: LoadedModel("byo-net", "image", torch.nn.Linear(2, 2), ["a", "b"]),
    )
    try:
        assert run_cli("fetch", "byo-net") == 1
        assert "byo-net: not a zoo model" in capsys.readouterr().err
    finally:
        registry.unregister_uploaded("byo-net")


def test_task_is_the_name_and_kind_the_older_one():
    net = torch.nn.Linear(2, 2)
    loaded = LoadedModel("t", "text", net, ["a", "b"])
    assert loaded.task == loaded.kind == "text"
    older = LoadedModel(name="t", kind="image", model=net, labels=["a", "b"])
    assert older.task == older.kind == "image"
    assert older == LoadedModel(name="t", task="image", model=net, labels=["a", "b"])
    with pytest.raises(TypeError, match="not both"):
        LoadedModel(name="t", task="image", kind="image", model=net, labels=[])
    bundled = load_model("shapes-cnn", device="cpu")
    assert bundled.kind == bundled.task == "image"
