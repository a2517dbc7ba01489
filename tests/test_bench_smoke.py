"""Smoke tests of the benchmark code on a tiny model (seconds, never timing assertions):
every contender runs, computes the same maps where it should, and the report is written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import saliency_core as sc
from benchmarks import reference_loops as ref
from benchmarks.cli import main, run_benchmark, scale_free_diff
from benchmarks.measure import interleaved, measure
from benchmarks.report import main_table, write_markdown
from benchmarks.setups import CONFIGS, build_subject, select_configs

# Runs guided methods: the native rule settled first (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("native_guided_rule")

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run():
    return run_benchmark(CPU, ["tiny-cnn"], CONFIGS, reps=1, size=16, batches=(8, 64),
                         reference_limit=2**30, memory_probe=False, precision=True, budget_s=0)


@pytest.mark.slow
def test_every_row_runs_every_contender(tiny_run):
    rows, _extras, notes = tiny_run
    assert [r["config"] for r in rows] == [c.key for c in CONFIGS] and not notes
    for r in rows:
        assert not r["errors"], (r["config"], r["errors"])
        assert r["times"]["ours"] > 0
        assert set(r["times"]) | set(r["skipped"]) == {"ours", "floor", "captum", "grad-cam", "reference"}
        assert r["ratios"]["floor"] > 0 and r["ratios"]["captum"] > 0
    cams = {r["config"] for r in rows if "grad-cam" in r["times"]}
    assert cams == {"guided_backprop", "gradcam", "guided_gradcam"}


@pytest.mark.slow
def test_contenders_compute_the_same_maps(tiny_run):
    rows, _extras, _notes = tiny_run
    for r in rows:
        assert r["agreement"] is not None, r["config"]
        assert r["agreement"] < 1e-4, (r["config"], r["agreement"])


@pytest.mark.slow
def test_extras_are_exact(tiny_run):
    _rows, extras, _notes = tiny_run
    assert {r["what"] for r in extras["refinement"]} == {
        "integrated_gradients steps 32 -> 64", "smoothgrad samples 16 -> 32"}
    for r in extras["refinement"]:
        assert r["max_rel_diff"] < 1e-5 and r["new_passes"] == r["reused_passes"]
    for r in extras["multi_target"]:
        assert r["max_rel_diff"] < 1e-5 and r["batched_backward"]
    # On the CPU, TF32 is a no-op and bf16 autocast is the only reduced precision.
    names = {(r["method"], r["precision"]) for r in extras["precision"]}
    assert ("ig_32", "bf16 autocast") in names
    strict = [r for r in extras["precision"] if r["precision"] == "fp32 strict"]
    assert all(r["rel_error"] == 0 for r in strict)


@pytest.mark.slow
def test_report_renders_and_keeps_the_other_device(tmp_path, tiny_run):
    rows, _extras, _notes = tiny_run
    table = main_table(rows)
    assert table.count("\n") == len(rows) + 1 and "×floor" in table
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(path, torch.device("cuda"), "## GPU: test\nkept\n")
    write_markdown(path, CPU, "## CPU: run-one\n")
    write_markdown(path, CPU, "## CPU: run-two\n")
    text = path.read_text()
    assert "kept" in text and "run-two" in text and "run-one" not in text
    assert text.index("<!-- BEGIN cpu -->") < text.index("<!-- BEGIN cuda -->")
    # What other benchmarks and people write after the device sections survives a rewrite of
    # either device (a run once dropped the service, browser and load-test sections).
    path.write_text(text + "\n## Load test\nmeasured by hand\n")
    write_markdown(path, CPU, "## CPU: run-three\n")
    write_markdown(path, torch.device("cuda"), "## GPU: again\n")
    text = path.read_text()
    assert text.count("## Load test\nmeasured by hand") == 1
    assert "run-three" in text and "again" in text
    assert "## CPU: run-two" not in text and "## GPU: test" not in text
    assert text.index("run-three") < text.index("again") < text.index("## Load test")
    assert text.count("<!-- BEGIN cpu -->") == 1 and text.count("<!-- BEGIN cuda -->") == 1


def test_a_gpu_section_goes_after_the_cpu_one_and_before_the_rest(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_markdown(path, CPU, "## CPU: only\n")
    path.write_text(path.read_text() + "\n## Engine service\nby benchmarks.serve\n")
    write_markdown(path, torch.device("cuda"), "## GPU: new\n")
    text = path.read_text()
    assert text.index("## CPU: only") < text.index("## GPU: new") < text.index("## Engine service")


def test_reference_loops_compute_what_they_claim():
    s = build_subject("tiny-cnn", CPU, 16)
    m, x, t = s.model, s.x, s.target
    grad = sc.attribute(m, x, "gradient", target=t)
    assert scale_free_diff(ref.vanilla_gradient(m, x, t), grad) < 1e-6
    assert scale_free_diff(ref.gradient_x_input(m, x, t), grad * x) < 1e-6
    # steps + 1 points averaged pairwise is our trapezoid rule with steps + 1 nodes.
    ours_ig = sc.attribute(m, x, "integrated_gradients", target=t, steps=9, baseline="zeros",
                           quadrature="riemann_trapezoid")
    assert scale_free_diff(ref.integrated_gradients(m, x, t, 8), ours_ig) < 1e-5
    guided = ref.guided_model(m)
    assert scale_free_diff(ref.guided_backprop(guided, x, t),
                           sc.attribute(m, x, "guided_backprop", target=t)) < 1e-6
    cam = ref.GradCAM(m, s.layer)
    try:
        assert scale_free_diff(cam(x, t), sc.attribute(m, x, "gradcam", target=t, layer=s.layer_path),
                               minmax=True) < 1e-5
    finally:
        cam.close()
    assert sum(len(mod._forward_hooks) + len(mod._backward_hooks) for mod in m.modules()) == 0
    torch.manual_seed(0)
    assert ref.smoothgrad(m, x, t, 3, 0.1).shape == x.shape
    assert ref.smooth_integrated_gradients(m, x, t, 2, 0.1, 4).shape == x.shape


def test_interleaving_repeats_and_records_errors():
    calls = []

    def boom():
        raise RuntimeError("no")

    res = interleaved({"a": lambda: calls.append("a") or 1, "b": boom}, CPU, reps=3, primer_s=0)
    assert len(res["a"]["times"]) == 3 and calls.count("a") == 4  # warm-up + 3
    assert res["b"]["error"].startswith("RuntimeError") and not res["b"]["times"]
    calls.clear()
    res = interleaved({"a": lambda: calls.append("a") or 1}, CPU, reps=3)
    assert len(res["a"]["times"]) == 3 and calls.count("a") == 7  # a short call is primed each time
    seconds, peak, out = measure(lambda: torch.ones(2**20), CPU)
    assert seconds >= 0 and out.numel() == 2**20
    assert peak is None or peak >= 0


def test_method_selection():
    assert [c.key for c in select_configs(["integrated_gradients"])] == ["ig_32", "ig_128"]
    assert [c.key for c in select_configs(["gradcam", "smoothgrad_32"])] == ["smoothgrad_32", "gradcam"]
    with pytest.raises(SystemExit):
        select_configs(["lime"])


@pytest.mark.slow
def test_cli_writes_the_markdown_and_out_files(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    out = tmp_path / "BENCH.md"
    rc = main(["--device", "cpu", "--quick", "--models", "tiny-cnn", "--methods", "gradient", "gradcam",
               "--reps", "1", "--size", "16", "--no-extras", "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    assert "<!-- BEGIN cpu -->" in text and "| tiny-cnn | 16x16 | gradcam |" in text
    data = json.loads((tmp_path / "out" / "bench-cpu.json").read_text())
    assert [r["config"] for r in data["rows"]] == ["gradient", "gradcam"]
    assert (tmp_path / "out" / "BENCHMARKS-cpu.md").read_text().startswith("## CPU")


def test_merge_puts_a_gpu_section_into_the_file(tmp_path):
    out = tmp_path / "BENCH.md"
    write_markdown(out, CPU, "## CPU: here\n")
    section = tmp_path / "BENCHMARKS-cuda.md"
    section.write_text("## GPU: NVIDIA H200\n| table |\n")
    assert main(["--merge", str(section), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## CPU: here" in text and "<!-- BEGIN cuda -->\n## GPU: NVIDIA H200" in text


@pytest.mark.slow
def test_memory_probe_runs_in_its_own_process():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory_probe", "tiny-cnn", "16", "8"],
                         capture_output=True, text=True, cwd=REPO, env=env, check=True, timeout=120)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["passes"] == 8 and probe["peak_bytes"] >= probe["before_bytes"] > 0
