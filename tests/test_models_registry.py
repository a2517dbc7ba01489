"""The catalogue and shared cache behind load_model, and the models/fetch commands."""

import argparse
import threading
import time

import pytest
import torch

from saliency_core.cli.models import register
from saliency_core.errors import ModelUnavailableError
from saliency_core.models import (
    LoadedModel,
    available_models,
    forget_loaded,
    load_model,
    registry,
)

pytestmark = pytest.mark.usefixtures("temp_cache")  # tests/conftest.py


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_catalogue_lists_every_source_with_its_task():
    infos = available_models()
    names = [m.name for m in infos]
    assert len(names) == len(set(names))
    assert names[:5] == [
        "shapes-cnn",
        "shapes-cnn-watermark",
        "shapes-cnn-random-labels",
        "shapes-vit",
        "minilm-sentiment",
    ]
    zoo = {m.name: m.task for m in infos if m.source == "zoo"}
    assert (
        zoo["swin_t"] == "image"
        and zoo["distilbert-base-uncased-finetuned-sst-2-english"] == "text"
    )
    assert zoo["gpt2"] == "text-generation"
    assert len(zoo) == 18
    for info in infos:
        assert info.task in ("image", "text", "text-generation") and info.description


def test_concurrent_first_requests_share_one_load():
    calls = []

    def slow_factory(device):
        calls.append(device)
        time.sleep(0.2)  # long enough that every thread arrives during the load
        return LoadedModel(
            "slow", "image", torch.nn.Linear(2, 2).to(device), ["a", "b"]
        )

    registry.register_uploaded(
        registry.ModelInfo("slow", "image", "uploaded", True, 0, "test"), slow_factory
    )
    try:
        results = []
        barrier = threading.Barrier(4)

        def worker():
            barrier.wait()
            results.append(load_model("slow", device="cpu"))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (
            len(calls) == 1
            and len(results) == 4
            and all(r is results[0] for r in results)
        )
        assert load_model("slow", device=torch.device("cpu")) is results[0]
        forget_loaded()
        assert load_model("slow", device="cpu") is not results[0] and len(calls) == 2
    finally:
        registry.unregister_uploaded("slow")
    with pytest.raises(ModelUnavailableError):
        load_model("slow", device="cpu")


def test_bundled_models_are_shared_per_device():
    first = load_model("shapes-cnn", device="cpu")
    assert load_model("shapes-cnn", device=torch.device("cpu")) is first


def test_default_device_follows_the_hardware():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert registry.resolve_device(None).type == expected
    loaded = load_model("shapes-cnn")
    assert next(loaded.model.parameters()).device.type == expected
    assert loaded.example_input().device.type == expected


def test_unknown_names_list_the_known_ones():
    with pytest.raises(
        ModelUnavailableError, match="no model called 'resnet9'.*resnet18"
    ):
        load_model("resnet9")


def test_models_command_prints_a_table(capsys):
    assert run_cli("models") == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["name", "task", "source", "present", "size"]
    line = next(row for row in rows if row.startswith("shapes-cnn "))
    assert line.split()[1:4] == ["image", "bundled", "yes"]
    line = next(row for row in rows if row.startswith("resnet50 "))
    assert line.split()[1:4] == ["image", "zoo", "no"] and "to download" in line
    assert "SALIENCY_CACHE" in out


def test_fetch_reports_failures_and_exits_non_zero(monkeypatch, capsys):
    from saliency_core.models import hf_text, torchvision_zoo

    fetched = []

    def offline(arch, progress=True):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision_zoo, "fetch", offline)
    monkeypatch.setattr(
        hf_text, "fetch", lambda name: fetched.append(name) or "somewhere"
    )
    assert (
        run_cli(
            "fetch",
            "resnet18",
            "shapes-cnn",
            "not-a-model",
            "textattack/bert-base-uncased-SST-2",
        )
        == 1
    )
    captured = capsys.readouterr()
    assert "resnet18: fetch failed: OSError: network is unreachable" in captured.err
    assert "not-a-model: not a zoo model" in captured.err
    assert "2 of 4 could not be fetched" in captured.err
    assert "shapes-cnn: bundled with the project" in captured.out
    assert fetched == ["textattack/bert-base-uncased-SST-2"]


def test_fetch_all_of_the_zoo_succeeds_when_the_downloaders_do(monkeypatch, capsys):
    from saliency_core.models import hf_lm, hf_text, torchvision_zoo

    fetched = []
    monkeypatch.setattr(
        torchvision_zoo, "fetch", lambda arch, progress=True: fetched.append(arch)
    )
    monkeypatch.setattr(hf_text, "fetch", lambda name: fetched.append(name))
    monkeypatch.setattr(hf_lm, "fetch", lambda name: fetched.append(name))
    assert run_cli("fetch", "zoo") == 0
    assert fetched == [*torchvision_zoo.ARCHITECTURES, *hf_text.HUB_MODELS, *hf_lm.LANGUAGE_MODELS]


def test_lead_cli_finds_the_subcommands():
    from saliency_core.cli import build_parser

    parser = build_parser()
    for argv in (["models"], ["fetch", "resnet18"], ["train-bundled", "--quick"]):
        assert callable(parser.parse_args(argv).func)
