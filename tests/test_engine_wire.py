"""What crosses the engine service's HTTP boundary: safetensors + JSON, never pickle; and the
app's side of it never imports Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from support.browser import REPO_ROOT

import saliency_core as sc
from saliency_core.serve import wire
from saliency_core.serve.config import EngineConfig


def test_requests_and_results_round_trip_exactly():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    baseline = torch.rand(1, 3, 8, 8)
    body = wire.encode_request("explain", "shapes-cnn", "integrated_gradients", [1, 2],
                               {"steps": 8, "baseline": baseline}, inputs=x)
    request = wire.decode_request(body)
    assert torch.equal(request["inputs"], x) and request["inputs"].dtype == torch.float64
    assert torch.equal(request["params"]["baseline"], baseline)
    assert request["params"]["steps"] == 8 and request["target"] == [1, 2]

    ex = sc.Explanation(attribution=torch.randn(2, 8, 8).to(torch.bfloat16),
                        target=torch.tensor([1, 2]), score=torch.randn(2),
                        predicted=torch.tensor([1, 0]), probabilities=torch.rand(2, 6),
                        metadata={"method": "gradcam", "time_s": 0.125, "delta": [float("nan")]})
    back = wire.decode_result(wire.encode_result(ex))
    assert back.attribution.dtype == torch.bfloat16 and torch.equal(back.attribution, ex.attribution)
    assert torch.equal(back.target, ex.target) and back.metadata["time_s"] == 0.125
    text = sc.TextAttribution(tokens=["[CLS]", "ok"], special=[True, False],
                              scores=np.array([0.0, 1.5]), attribution=torch.ones(2, 4),
                              target=1, predicted=0, probabilities=np.array([0.5, 0.5]))
    got = wire.decode_result(wire.encode_result(text))
    assert got.tokens == text.tokens and np.array_equal(got.scores, text.scores)


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"\xff" * 64, b"\x10" + b"\x00" * 7 + b"{}",
                                  wire.pack({}, {"op": "format_disk", "model": "m", "method": "g"})])
def test_malformed_messages_are_refused_with_a_message(data):
    with pytest.raises(wire.WireError):
        wire.decode_request(data)


def test_a_pickle_is_not_a_message():
    import pickle

    with pytest.raises(wire.WireError):
        wire.decode_result(pickle.dumps({"attribution": torch.ones(2)}))


def test_engine_settings_become_serve_options():
    fixed = EngineConfig(num_replicas=2, max_ongoing_requests=4).deployment_options(0)
    assert fixed["num_replicas"] == 2 and fixed["max_ongoing_requests"] == 4
    assert fixed["ray_actor_options"]["num_gpus"] == 0
    scaled = EngineConfig(min_replicas=1, max_replicas=4, num_gpus=0.5).deployment_options(8)
    assert scaled["autoscaling_config"]["max_replicas"] == 4 and "num_replicas" not in scaled
    assert scaled["ray_actor_options"]["num_gpus"] == 0.5
    assert EngineConfig().deployment_options(cluster_gpus=2)["ray_actor_options"]["num_gpus"] == 1
    with pytest.raises(sc.SaliencyError, match="unknown engine settings: replicas"):
        EngineConfig.from_dict({"replicas": 3})


@pytest.mark.slow
def test_the_app_and_the_client_never_import_ray():
    code = ("import sys, workbench.jobs.compute, saliency_core.serve.client, saliency_core.cli as c; "
            "c.build_parser(); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def _engine_down(monkeypatch, tmp_path) -> None:
    import socket

    from workbench.jobs import compute

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("SALIENCY_ENGINE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path))
    compute.result_cache().clear()


def _says_unreachable(at) -> bool:
    return any("engine service" in e.value and "not reachable" in e.value for e in at.error)


def test_the_app_says_when_the_service_is_down(monkeypatch, tmp_path):
    import time

    from support.apptest import run_app_page

    _engine_down(monkeypatch, tmp_path)
    started = time.monotonic()
    at = run_app_page(str(REPO_ROOT / "pages" / "image.py"),
                      {"model": "shapes-cnn", "input": "shapes:1", "method": "gradient"})
    assert _says_unreachable(at)
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("page", ["compare", "text", "sanity", "image-top-k", "image-progressive"])
def test_every_page_says_when_the_service_is_down(monkeypatch, tmp_path, page):
    """Each kind of model work (maps, text, sanity checks, the top-k view, a progressive run)
    ends in the page's message, not in a hang or a traceback."""
    from support.apptest import run_app_page

    _engine_down(monkeypatch, tmp_path)
    pages = REPO_ROOT / "pages"
    if page == "compare":
        at = run_app_page(str(pages / "compare.py"), {"model": "shapes-cnn", "input": "shapes:1",
                                                      "methods": "gradient,gradcam"})
    elif page == "text":
        at = run_app_page(str(pages / "text.py"), {"method": "gradient", "text": "A fine film."})
    elif page == "sanity":
        from test_sanity_page import start

        at = start(methods=("gradient",))
        at.button(key="sanity.run").click().run()
    elif page == "image-top-k":
        # The map itself computed while the service was up (now in the result cache), then
        # the service goes away and the top-k view is asked for.
        url = os.environ.pop("SALIENCY_ENGINE_URL")
        at = run_app_page(str(pages / "image.py"), {"model": "shapes-cnn", "input": "shapes:1",
                                                    "method": "gradcam"})
        os.environ["SALIENCY_ENGINE_URL"] = url
        at.toggle(key="image.topk").set_value(True).run()
    else:
        at = run_app_page(str(pages / "image.py"),
                          {"model": "shapes-cnn", "input": "shapes:1",
                           "method": "integrated_gradients", "steps": "64"})
    assert not at.exception, [e.value for e in at.exception]
    assert _says_unreachable(at), [e.value for e in at.error]


def test_a_service_that_keeps_losing_the_request_gets_a_clear_message():
    """A replica that dies mid-reply on every try (a server that sends half a stream and
    hangs up): retried, then one message saying so, not a hang."""
    import socket
    import threading

    from saliency_core.serve.client import Client, EngineUnavailableError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.recv(1 << 20)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\nP\x00\x00\x00\x10\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    client = Client(f"http://127.0.0.1:{server.getsockname()[1]}", retries=2, retry_wait_s=0)
    try:
        with pytest.raises(EngineUnavailableError, match="lost the request 3 times"):
            client.explain("shapes-cnn", torch.rand(1, 3, 64, 64), "gradient")
    finally:
        server.close()
    assert len(accepted) == 3


def test_structured_values_round_trip_exactly():
    from saliency_core.evaluation import MapSet, RandomizationResult, RandomizationUnit

    result = RandomizationResult(
        mode="cascading", units=[RandomizationUnit("fc", ("fc",))], steps=["original", "fc"],
        targets=np.array([3]), seed=7, threshold=0.5,
        similarity={"gradient": {"spearman_abs": np.random.default_rng(0).random((2, 1))}},
        maps={"gradient": [MapSet(abs=np.ones((1, 4, 4), np.float32),
                                  signed=np.full((1, 4, 4), -0.5, np.float32))]})
    body = wire.encode_call("parameter_randomization",
                            [wire.ModelRef("shapes-cnn"), torch.rand(1, 3, 8, 8)],
                            {"methods": ("gradient",), "result": result, "n": np.int64(3)})
    request = wire.decode_request(body)
    assert request["args"][0] == wire.ModelRef("shapes-cnn")
    back = request["kwargs"]["result"]
    assert isinstance(back, RandomizationResult) and back.units == result.units
    assert np.array_equal(back.similarity["gradient"]["spearman_abs"],
                          result.similarity["gradient"]["spearman_abs"])
    assert back.maps["gradient"][0].signed.dtype == np.float32
    assert request["kwargs"]["methods"] == ("gradient",) and request["kwargs"]["n"] == 3
    rows = [{"method": "Grad-CAM", "rank": 1, "deletion_auc": np.float32(0.25)}]
    assert wire.decode_result(wire.encode_result(rows)) == rows


def test_a_message_cannot_name_a_class_or_a_call_of_its_own():
    from saliency_core.serve import calls as service_calls

    doc = {"op": "call", "function": "scoreboard",
           "args": {"__kind__": "dataclass", "class": "Popen", "fields": {"args": "ls"}}}
    with pytest.raises(wire.WireError):
        wire.decode_request(wire.pack({}, doc))
    with pytest.raises(sc.SaliencyError, match="offers no call 'system'"):
        service_calls.run_call("system", [], {})
    with pytest.raises(TypeError, match="object value cannot be sent"):
        wire.encode_call("scoreboard", [object()], {})


def test_named_calls_and_levels_equal_the_library_in_process():
    from saliency_core.serve import calls as service_calls

    model = sc.load_model("shapes-cnn")
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    seen = []
    out = service_calls.run_call("attribute_targets", [model, x], {"method": "gradcam",
                                                                  "top_k": 3},
                                 {"progress": lambda d, t: seen.append((d, t))})
    direct = sc.attribute_targets(model, x, method="gradcam", top_k=3)
    assert torch.equal(out.attribution, direct.attribution) and seen
    levels = []
    final = service_calls.refine_levels(model, x, "integrated_gradients", "predicted",
                                        {"steps": 16}, [4, 8, 16],
                                        on_level=lambda c, ex: levels.append((c, ex)))
    refiner = sc.Refiner(model, x, "integrated_gradients")
    assert [c for c, _ in levels] == [4, 8]
    for count, ex in levels:
        assert torch.equal(ex.attribution, refiner.explain(steps=count).attribution)
    assert torch.equal(final.attribution, refiner.explain(steps=16).attribution)


def test_uploaded_weights_stay_in_the_app_and_the_page_says_so(monkeypatch, tmp_path):
    """Uploaded weights exist only in this app's memory, so their work runs here even with a
    service configured (this one is down: anything sent to it would fail), and the page says
    why."""
    import torchvision
    from safetensors.torch import save
    from support.apptest import run_app_page

    from saliency_core.models import registration, registry

    torch.manual_seed(0)
    state = torchvision.models.mobilenet_v3_large(num_classes=3).state_dict()
    registration.load_uploaded_weights("mobilenet_v3_large", save(state), 3,
                                       name="engine-test-upload", device="cpu")
    try:
        _engine_down(monkeypatch, tmp_path)
        at = run_app_page(str(REPO_ROOT / "pages" / "image.py"),
                          {"model": "engine-test-upload", "input": "photo:coffee",
                           "method": "gradcam"})
        assert not at.error, [e.value for e in at.error]
        assert any("uploaded weights stay in your session" in i.value for i in at.info)
        assert at.get("plotly_chart")  # the map, computed in-process
    finally:
        registry.unregister_uploaded("engine-test-upload")
