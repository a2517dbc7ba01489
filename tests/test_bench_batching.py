"""The scheduler-batching benchmark runs (`python -m benchmarks.batching --smoke`): the app's
requests from three sessions, queued together, are served by one engine call when batched and
by three when not, with the same maps either way; the real figures come from
`make bench-batching`."""

from __future__ import annotations

import json

from benchmarks import batching


def test_smoke_run_batches_queued_requests_and_reports_both_modes(tmp_path, capsys):
    out = tmp_path / "batching.json"
    assert batching.main(["--smoke", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["mode"]: row for row in result["rows"]}
    assert set(rows) == set(batching.MODES)
    sessions = result["sessions"]
    assert rows["batched"]["engine_calls"] == result["repeats"]
    assert rows["one at a time"]["engine_calls"] == sessions * result["repeats"]
    for row in rows.values():
        assert row["requests"] == sessions * result["repeats"] and not row["errors"]
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["requests_per_s"] > 0
    assert result["max_relative_difference"] < 1e-4
    printed = capsys.readouterr().out
    assert "| batched | 1 |" in printed and "Batching gain:" in printed


def test_write_replaces_its_own_block(tmp_path):
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\nother text\n")
    batching.write("first table", bench)
    batching.write("second table", bench)
    text = bench.read_text()
    assert text.count(batching.HEADING) == 1 and "other text" in text
    assert "second table" in text and "first table" not in text
