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

import numpy as np
import pytest
import torch
from support.apptest import run_app_page
from support.browser import REPO_ROOT

import saliency_core as sc
from saliency_core.computation import Computation
from saliency_core.errors import CancelledError, UnknownMethodError
from saliency_core.serve.client import Client, EngineUnavailableError, model_ref
from workbench.jobs import compute, engine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("native_guided_rule"),  # runs guided methods (tests/conftest.py)
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def service():
    from saliency_core.cli import serve as serve_cli
    from saliency_core.serve.config import EngineConfig

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


def test_named_calls_and_progressive_levels_are_bit_identical_to_in_process(client, one_thread):
    from saliency_core import evaluation
    from saliency_core.serve import calls as service_calls

    model = sc.load_model("shapes-cnn")
    x = image(5)
    remote = client.call("attribute_targets", model_ref("shapes-cnn"), x, method="gradcam",
                         top_k=3)
    local = sc.attribute_targets(model, x, method="gradcam", top_k=3)
    assert torch.equal(remote.attribution, local.attribution)
    assert torch.equal(remote.targets, local.targets)
    # Everything but the clock: the run's time and its chunks' timings (the cost model's
    # measurements) differ from one run to the next.
    clockless = {"time_s": 0, "timing": None}
    assert {**remote.metadata, **clockless} == {**local.metadata, **clockless}

    maps = {"Gradient": sc.attribute(model, x, "gradient"), "Grad-CAM": local.attribution[:1]}
    seen: list = []
    rows = client.call("scoreboard", model, x, maps, target=int(local.targets[0]), steps=8,
                       progress=lambda done, total: seen.append(total))
    assert rows == evaluation.scoreboard(model, x, maps, target=int(local.targets[0]), steps=8)
    assert seen  # the replica's progress reached the caller

    cascade = client.call("parameter_randomization", model, x, ["gradient"], max_steps=3, seed=2)
    here = evaluation.parameter_randomization(model, x, ["gradient"], max_steps=3, seed=2)
    assert cascade.steps == here.steps and cascade.units == here.units
    for metric, values in here.similarity["gradient"].items():
        assert np.array_equal(cascade.similarity["gradient"][metric], values), metric
    assert all(np.array_equal(a.signed, b.signed)
               for a, b in zip(cascade.maps["gradient"], here.maps["gradient"]))

    assert client.call("candidate_layers", model) == \
        [(path, tuple(shape)) for path, shape in model.candidate_layers()]

    levels: list = []
    final = client.refine("shapes-cnn", x, "integrated_gradients", [4, 8, 16], steps=16,
                          quadrature="riemann_right", on_level=lambda count, ex: levels.append((count, ex)))
    expected: list = []
    alone = service_calls.refine_levels(model, x, "integrated_gradients", "predicted",
                                        {"steps": 16, "quadrature": "riemann_right"},
                                        [4, 8, 16], on_level=lambda c, ex: expected.append((c, ex)))
    assert [c for c, _ in levels] == [4, 8] == [c for c, _ in expected]
    for (_, got), (_, want) in zip(levels, expected):
        assert torch.equal(got.attribution, want.attribution)
    assert torch.equal(final.attribution, alone.attribution)
    assert final.metadata["reused_passes"] == alone.metadata["reused_passes"] > 0


def test_the_queue_position_is_reported_for_work_sent_to_the_service(service, monkeypatch):
    """What the app queues (workbench.jobs.scheduler, in front of the client) runs on the service,
    and a second request waiting behind it is told its position."""
    from workbench.jobs.scheduler import Job, Scheduler

    monkeypatch.setenv("SALIENCY_ENGINE_URL", service)
    engine._client.clear()
    model = sc.load_model("shapes-cnn")
    scheduler = Scheduler(concurrency=1)
    running = threading.Event()
    release = threading.Event()

    def slow_progress(done: int, total: int) -> None:
        running.set()
        release.wait(30)  # holds the first request on the service until the second is queued

    def request(i: int, progress=None):
        computation = Computation("image", model.name, "cpu", f"queue-test-{i}",
                                  "integrated_gradients", {"steps": 32, "batch_size": 4},
                                  "predicted")
        return compute.image_request(engine.configured(), model, computation, image(i), "image",
                                     progress=progress)

    first = request(0, slow_progress)
    results: dict = {}
    worker = threading.Thread(target=lambda: results.update(first=scheduler.run(
        Job("session-a", first.key, first.payload, first.run_batch))))
    worker.start()
    assert running.wait(60), "the first request never started on the service"
    waits: list = []

    def on_wait(waiting) -> None:
        waits.append(waiting)
        release.set()

    second = request(1)
    results["second"] = scheduler.run(Job("session-b", second.key, second.payload,
                                          second.run_batch), on_wait=on_wait)
    worker.join(60)
    assert waits and (waits[0].position, waits[0].queued, waits[0].running) == (1, 1, 1)
    local = sc.explain(model, image(1), "integrated_gradients", steps=32)
    assert np.allclose(results["second"].attribution, local.attribution[0].numpy(), atol=1e-5)
    assert results["first"].metadata["method"] == "integrated_gradients"
    engine._client.clear()


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


@pytest.mark.parametrize("work", ["explain", "scoreboard"])
def test_progress_arrives_and_stop_reaches_the_replica(client, work):
    before = client.health()["counts"]["cancelled"]
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        stop.set()

    started = time.monotonic()
    with pytest.raises(CancelledError):
        if work == "explain":
            client.explain("shapes-cnn", image(), "integrated_gradients", steps=1024,
                           batch_size=1, progress=progress, cancel=stop)
        else:  # a named call without a cancel parameter of its own
            maps = {"Gradient": torch.rand(1, 3, 64, 64)}
            client.call("scoreboard", model_ref("shapes-cnn"), image(), maps, steps=512,
                        batch_size=1, progress=progress, cancel=stop)
    assert seen and seen[0][1] == (1024 if work == "explain" else 2)  # IG steps; two curves
    deadline = time.monotonic() + 20
    while client.health()["counts"]["cancelled"] == before:
        assert time.monotonic() < deadline, "the replica kept running after Stop"
        time.sleep(0.2)
    assert time.monotonic() - started < 20


@pytest.mark.long  # waits ~20 s for Serve to restart a replica: `make test-engine` runs it
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

    class NoLocalRuns:
        def __getattr__(self, name):
            raise AssertionError("the app computed in-process although a service is configured")

    monkeypatch.setattr(engine, "local", NoLocalRuns)
    remote = run_app_page(page, query)
    compute.result_cache.clear()
    urls = [[img.url for e in at.get("image") for img in e.proto.imgs] for at in (local, remote)]
    assert urls[0] and urls[0] == urls[1]


def _forbid_in_process_model_work(monkeypatch) -> None:
    """Make every in-process entry point to model work fail: what the page shows must then
    have come from the service."""
    from saliency_core import api, evaluation
    from saliency_core.models.base import LoadedModel
    from saliency_core.text import classifier as text

    def no_local_runs(*args, **kwargs):
        raise AssertionError("the app computed in-process although a service is configured")

    for owner, name in ((sc, "explain"), (sc, "attribute_targets"), (sc.Refiner, "explain"),
                        (LoadedModel, "candidate_layers"), (api, "explain"),
                        (text, "attribute_text"),
                        (evaluation, "scoreboard"), (evaluation, "parameter_randomization"),
                        (evaluation, "data_randomization")):
        monkeypatch.setattr(owner, name, no_local_runs)


def _pictures(at) -> list[str]:
    return [img.url for e in at.get("image") for img in e.proto.imgs]


def _tables(at) -> list:
    return [e.value.to_dict() for e in at.dataframe]


@pytest.mark.long  # six page runs, in-process and through the service: `make test-engine`
def test_every_page_sends_its_model_work_to_the_service(service, monkeypatch, tmp_path,
                                                        one_thread):
    """Image (a progressive run and the top-k view), Compare (maps and the scoreboard) and
    Sanity (both randomization tests): the same pictures and figures in-process and through
    the service, and nothing computed in the app when the service is configured."""
    from test_sanity_page import start

    from workbench.jobs import admission as service_module
    from workbench.jobs import models

    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path))
    image_page = str(REPO_ROOT / "pages" / "image.py")
    compare_page = str(REPO_ROOT / "pages" / "compare.py")
    image_query = {"model": "shapes-cnn", "device": "cpu", "input": "shapes:3",
                   "method": "integrated_gradients", "steps": "32",
                   "quadrature": "riemann_right"}
    compare_query = {"model": "shapes-cnn", "device": "cpu", "input": "shapes:1",
                     "methods": "gradient,gradcam", "score": "true"}

    def visit() -> dict:
        compute.result_cache.clear()
        models._layers_of.clear()
        service_module.cost_model.clear()  # the cost estimate's calibration run, too
        st_image = run_app_page(image_page, image_query)
        st_image.toggle(key="image.topk").set_value(True).run()
        assert not st_image.exception and not st_image.error, [e.value for e in st_image.error]
        st_compare = run_app_page(compare_page, compare_query)
        sanity = start()
        sanity.button(key="sanity.run").click().run()
        assert not sanity.exception and not sanity.error, [e.value for e in sanity.error]
        return {"image": _pictures(st_image), "compare": _pictures(st_compare),
                "scoreboard": _tables(st_compare), "sanity": _pictures(sanity),
                "verdicts": _tables(sanity)}

    local = visit()
    monkeypatch.setenv("SALIENCY_ENGINE_URL", service)
    _forbid_in_process_model_work(monkeypatch)
    remote = visit()
    compute.result_cache.clear()
    assert local["scoreboard"] and local["verdicts"]
    for part in local:
        assert local[part] == remote[part], part
