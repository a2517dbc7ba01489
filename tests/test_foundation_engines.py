"""One engine interface: the in-process engine and the engine service's client offer the same
calls with the same signatures, and the in-process one answers as the library does."""

from __future__ import annotations

import inspect

import torch

import saliency_core as sc
from saliency_core.computation import Computation, batch_key
from saliency_core.engines import Engine, LocalEngine
from saliency_core.serve.client import Client

CALLS = ("attribute", "explain", "attribute_text", "refine", "call")


def test_local_engine_and_client_have_the_protocols_calls_and_signatures():
    for name in CALLS:
        declared = inspect.signature(getattr(Engine, name))
        assert inspect.signature(getattr(LocalEngine, name)) == declared, name
        assert inspect.signature(getattr(Client, name)) == declared, name
    assert isinstance(LocalEngine(), Engine)
    assert isinstance(Client("http://127.0.0.1:1"), Engine)


def test_local_engine_answers_as_the_library():
    loaded = sc.load_model("shapes-cnn", "cpu")
    x = torch.rand(1, 3, *loaded.input_size) if loaded.input_size else torch.rand(1, 3, 64, 64)
    engine = LocalEngine()
    assert torch.equal(engine.attribute("shapes-cnn", x, "gradient"),
                       sc.attribute(loaded, x, "gradient"))
    levels: list[int] = []
    final = engine.refine(loaded, x, "integrated_gradients", [4, 8], steps=8,
                          quadrature="riemann_right", on_level=lambda c, _ex: levels.append(c))
    assert levels == [4]
    alone = sc.explain(loaded, x, "integrated_gradients", steps=8, quadrature="riemann_right")
    assert torch.allclose(final.attribution, alone.attribution, atol=1e-6)
    layers = engine.call("candidate_layers", loaded)
    assert layers and all(isinstance(shape, tuple) for _, shape in layers)


def test_one_batch_rule_for_the_app_and_the_service():
    plain = Computation("image", "m", "cpu", "d", "gradient", {}, "predicted")
    assert plain.batch_key((3, 8, 8)) == plain.with_params().batch_key((3, 8, 8)) is not None
    assert Computation("image", "m", "cpu", "other", "gradient", {}, "predicted").batch_key(
        (3, 8, 8)) == plain.batch_key((3, 8, 8))  # another input: same batch
    assert Computation("image", "m", "cpu", "d", "smoothgrad", {}, 0).batch_key((3, 8, 8)) is None
    assert Computation("image", "m", "cpu", "d", "integrated_gradients",
                       {"baseline": "uniform"}, 0).batch_key((3, 8, 8)) is None
    assert batch_key("attribute_text", "m", "gradient", {}, (3,), None, "index") is None
    assert plain.key != plain.with_params(steps=2).key
