"""The request log line and the Prometheus endpoint, scraped over HTTP."""

from __future__ import annotations

import json
import logging
import urllib.request

from support.browser import free_port

from workbench.hosting import telemetry


def test_request_is_logged_as_one_json_line_and_scraped_from_the_metrics_port(monkeypatch,
                                                                             caplog):
    port = free_port()
    monkeypatch.setenv(telemetry.METRICS_PORT_ENV, str(port))
    monkeypatch.setenv("SALIENCY_METRICS_ADDRESS", "127.0.0.1")
    monkeypatch.setattr(telemetry, "_server_port", None)
    assert telemetry.start_metrics_server() == port
    telemetry.LOG.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger=telemetry.LOG.name):
            record = telemetry.record_request(
                session="abc", user="ada@team.example", page="image", model="shapes-cnn",
                method="gradient", device="cpu", passes=1, queue_wait_s=0.5, compute_s=0.25,
                outcome="ok")
    finally:
        telemetry.LOG.propagate = False
    telemetry.update_queue("cpu", 3, 1)
    line = json.loads(caplog.records[-1].getMessage())
    assert line == record and line["user"] == "ada@team.example" and line["outcome"] == "ok"
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'saliency_requests_total{method="gradient",model="shapes-cnn",outcome="ok"}' in body
    assert 'saliency_queue_length{device="cpu"} 3.0' in body
    assert "saliency_queue_wait_seconds_bucket" in body and "saliency_compute_seconds_sum" in body
