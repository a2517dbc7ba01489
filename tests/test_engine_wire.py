"""What crosses the engine service's HTTP boundary: safetensors + JSON, never pickle; and the
app's side of it never imports Ray."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from browser import REPO_ROOT

import saliency_core as sc
from saliency_core import wire
from saliency_core.service_config import EngineConfig


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


def test_the_app_and_the_client_never_import_ray():
    code = ("import sys, workbench.compute, saliency_core.remote, saliency_core.cli as c; "
            "c.build_parser(); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_the_app_says_when_the_service_is_down(monkeypatch, tmp_path):
    import socket
    import time

    from apptest import run_app_page

    from workbench import compute

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("SALIENCY_ENGINE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path))
    compute.result_cache().clear()
    started = time.monotonic()
    at = run_app_page(str(REPO_ROOT / "pages" / "image.py"),
                      {"model": "shapes-cnn", "input": "shapes:1", "method": "gradient"})
    assert any("engine service" in e.value and "not reachable" in e.value for e in at.error)
    assert time.monotonic() - started < 60
