"""The engine as a Ray Serve service and its client: one local Ray session for the module
(Ray is slow to start), a few requests each proving one property."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time

import pytest
import torch
from apptest import run_app_page
from browser import REPO_ROOT

import saliency_core as sc
from saliency_core.errors import CancelledError, UnknownMethodError
from saliency_core.remote import Client, EngineUnavailableError
from workbench import compute

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service():
    from saliency_core import serve_cli
    from saliency_core.service_config import EngineConfig

    # A long batch window, so that requests sent together are surely combined.
    config = EngineConfig(num_replicas=1, num_cpus=0.5, torch_threads=1, max_batch_size=4,
                          batch_wait_timeout_s=0.3)
    url = serve_cli.start(config, port=free_port(), ray_cpus=2)
    try:
        yield url
    finally:
        serve_cli.stop()


@pytest.fixture
def client(service):
    return Client(service, retries=4, retry_wait_s=1.0)


@pytest.fixture
def one_thread():
    # The replica runs torch on one thread; so does the in-process reference.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_results_are_bit_identical_to_in_process(client, one_thread):
    model = sc.load_model("shapes-cnn")
    x = image()
    for method, params in (("integrated_gradients", {"steps": 16}), ("gradcam", {}),
                           ("smoothgrad", {"samples": 4, "seed": 3})):
        remote, local = client.explain("shapes-cnn", x, method, **params), \
            sc.explain(model, x, method, **params)
        assert torch.equal(remote.attribution, local.attribution), method
        assert torch.equal(remote.probabilities, local.probabilities)
        assert torch.equal(remote.target, local.target)
        assert remote.metadata["passes"] == local.metadata["passes"]
    assert torch.equal(client.attribute("shapes-cnn", x, "gradient", target=2),
                       sc.attribute(model, x, "gradient", target=2))
    text_model = sc.load_model("minilm-sentiment")
    remote = client.attribute_text("minilm-sentiment", "a gripping film", "gradient_x_input")
    local = sc.attribute_text(text_model, text_model.tokenizer, "a gripping film",
                              "gradient_x_input")
    assert remote.tokens == local.tokens and (remote.scores == local.scores).all()
    assert torch.equal(remote.attribution, local.attribution)


def test_user_errors_keep_their_type_and_message(client):
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'"):
        client.explain("shapes-cnn", image(), "nope")
    host, port = client.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/run", body=b"\x00" * 40)  # not a safetensors message: refused
    response = conn.getresponse()
    assert response.status == 400 and "malformed" in json.loads(response.read())["error"]


def test_requests_from_different_users_share_one_pass(client):
    before = client.health()["counts"]
    results: dict[int, sc.Explanation] = {}

    def user(i: int) -> None:
        results[i] = client.explain("shapes-cnn", image(i), "integrated_gradients", steps=8)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    after = client.health()["counts"]
    assert after["requests"] - before["requests"] == 3
    assert after["engine_calls"] - before["engine_calls"] < 3
    assert max(r.metadata.get("batched_requests", 1) for r in results.values()) > 1
    model = sc.load_model("shapes-cnn")
    for i, r in results.items():  # each user gets their own image's answer
        solo = sc.explain(model, image(i), "integrated_gradients", steps=8)
        assert torch.allclose(r.attribution, solo.attribution, atol=1e-5)
        assert len(r.metadata["completeness_delta"]) == 1


def test_progress_arrives_and_stop_reaches_the_replica(client):
    before = client.health()["counts"]["cancelled"]
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        stop.set()

    started = time.monotonic()
    with pytest.raises(CancelledError):
        client.explain("shapes-cnn", image(), "integrated_gradients", steps=1024, batch_size=1,
                       progress=progress, cancel=stop)
    assert seen and seen[0][1] == 1024
    deadline = time.monotonic() + 20
    while client.health()["counts"]["cancelled"] == before:
        assert time.monotonic() < deadline, "the replica kept running after Stop"
        time.sleep(0.2)
    assert time.monotonic() - started < 20


@pytest.mark.skipif(os.environ.get("SALIENCY_LONG_TESTS") != "1",
                    reason="waits ~20 s for Serve to restart a replica: `make test-engine` runs it")
def test_a_replica_killed_mid_request_is_retried(client):
    pid = client.health()["pid"]
    result: dict = {}

    def killer(done: int, total: int) -> None:
        if not result:
            result["killed"] = True
            os.kill(pid, signal.SIGKILL)  # the replica process this module's Ray started

    out = client.explain("shapes-cnn", image(), "integrated_gradients", steps=400,
                         batch_size=2, progress=killer)
    assert result.get("killed") and out.attribution.shape == (1, 3, 64, 64)
    assert client.health()["pid"] != pid


def test_a_service_that_is_down_is_reported_at_once():
    started = time.monotonic()
    with pytest.raises(EngineUnavailableError, match="not reachable.*make serve-engine"):
        Client(f"http://127.0.0.1:{free_port()}").explain("shapes-cnn", image(), "gradient")
    assert time.monotonic() - started < 10


def test_the_app_pointed_at_the_service_shows_the_same_pictures(service, monkeypatch, tmp_path):
    page = str(REPO_ROOT / "pages" / "image.py")
    query = {"model": "shapes-cnn", "device": "cpu", "input": "shapes:3",
             "method": "integrated_gradients", "steps": "16"}
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path))
    compute.result_cache.clear()
    local = run_app_page(page, query)
    compute.result_cache.clear()
    monkeypatch.setenv("SALIENCY_ENGINE_URL", service)

    def no_local_runs(*args, **kwargs):
        raise AssertionError("the app computed in-process although a service is configured")

    monkeypatch.setattr(sc, "explain", no_local_runs)
    remote = run_app_page(page, query)
    compute.result_cache.clear()
    urls = [[img.url for e in at.get("image") for img in e.proto.imgs] for at in (local, remote)]
    assert urls[0] and urls[0] == urls[1]
