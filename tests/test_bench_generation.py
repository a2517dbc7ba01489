"""The language-model benchmark runs end to end on a micro setting, its three contenders do
the same work (ours agrees with Captum) and its table has one row per method and count."""

from __future__ import annotations

import pytest
import torch

from benchmarks.generation import Setup, run, table


def test_the_generation_benchmark_measures_ours_the_floor_and_captum():
    micro = Setup(layers=1, width=32, heads=2, vocab=400, prompt=8, tokens=(2,), steps=2)
    rows = run(micro, torch.device("cpu"), reps=0)
    assert [(r["method"], r["G"]) for r in rows] == [("gradient_x_input", 2),
                                                      ("integrated_gradients(2)", 2)]
    for r in rows:
        assert not any(r[f"{n}_error"] for n in ("ours", "floor", "captum"))
        assert r["agreement"] < 1e-4
    assert table(rows).count("\n") == 3


def test_inseq_does_the_same_work_where_it_is_installed():
    # inseq is no project dependency: `make bench-generation-inseq` puts it in .bench-inseq/;
    # run this with PYTHONPATH=.bench-inseq to check it.
    pytest.importorskip("inseq")
    micro = Setup(layers=1, width=32, heads=2, vocab=400, prompt=8, tokens=(2,), steps=2)
    rows = run(micro, torch.device("cpu"), reps=0)
    assert not any(r["inseq_error"] for r in rows)
    assert rows[0]["agreement_inseq"] < 1e-4  # gradient x input, number for number
    assert "ours / inseq" in table(rows)
