"""The engine-service benchmark's report (the load itself runs in `make bench-serve`)."""

from __future__ import annotations

import argparse

from benchmarks import serve


def test_report_table_and_rewrite_between_markers(tmp_path):
    args = argparse.Namespace(model="shapes-cnn", method="gradcam", params={"steps": 4},
                              size=64, clients=8, requests=2, wait=0.01, torch_threads=1,
                              hop_reps=3, label="tiny")
    row = {"rps": 12.5, "p50": 0.05, "p95": 0.12, "errors": [], "done": 16, "mean_batch": 3.0}
    text = serve.report(args, [(1, 1, row), (2, 8, row)], {"local": 0.01, "remote": 0.025})
    assert "| 1 | off | 12.5 | 50 ms | 120 ms | 3.0 | 0 |" in text
    assert "| 2 | on (up to 8) |" in text and "overhead 15.0 ms" in text
    busy = serve.report(args, [(1, 1, row)], {"local": 0.01, "remote": 0.02},
                        {"cpu": "x86_64", "cores": 2, "load": 3.5, "gpu": None})
    assert "2 cores, CPU only" in busy and "no GPU" in busy and "busy with other work" in busy
    quiet = serve.report(args, [(1, 1, row)], {"local": 0.01, "remote": 0.02},
                         {"cpu": "x86_64", "cores": 16, "load": 0.2, "gpu": "NVIDIA H200"})
    assert "GPU NVIDIA H200" in quiet and "busy" not in quiet
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\nearlier tables\n")
    serve.write(text, "tiny", bench)
    serve.write(text.replace("12.5", "13.5"), "tiny", bench)  # a re-run replaces its table
    other = serve.report(argparse.Namespace(**{**vars(args), "label": "other"}), [(1, 1, row)],
                         {"local": 0.01, "remote": 0.02})
    serve.write(other, "other", bench)  # another workload gets its own table
    written = bench.read_text()
    begin, _ = serve.markers("tiny")
    assert written.count(begin) == 1 and "13.5" in written and "earlier tables" in written
    assert written.count(serve.HEADING) == 1 and serve.markers("other")[0] in written
    assert serve.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == 5.0
