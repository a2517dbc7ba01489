"""workbench.jobs is the app's work without its pages: it never imports Streamlit, so the
queue, the costs, the result cache and the model pool run in any process (benchmarks, another
front end, a worker)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support.browser import REPO_ROOT

JOBS = REPO_ROOT / "workbench" / "jobs"


def _imported(tree: ast.AST) -> list[str]:
    """Every module an import statement names, at module level or inside a function."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_no_module_of_workbench_jobs_imports_streamlit():
    modules = sorted(JOBS.glob("*.py"))
    assert len(modules) > 5
    offenders = {str(path.relative_to(REPO_ROOT)): name
                 for path in modules
                 for name in _imported(ast.parse(path.read_text(), str(path)))
                 if name == "streamlit" or name.startswith("streamlit.")}
    assert not offenders, offenders


def test_the_queue_costs_results_and_model_pool_run_without_streamlit():
    modules = [f"workbench.jobs.{Path(p).stem}" for p in sorted(JOBS.glob("*.py"))
               if Path(p).stem != "__init__"]
    code = f"""
import sys
for name in {modules!r}:
    __import__(name)
assert "streamlit" not in sys.modules, "imported streamlit"

import torch
from workbench.jobs import admission, compute, costs, modelpool, results, scheduler
from workbench.jobs.visitor import Visitor

done = scheduler.Scheduler(concurrency=1).run(
    scheduler.Job("s", "k", 2, lambda payloads: [p * 3 for p in payloads]))
assert done == 6
model = costs.CostModel()
model.observe_run("m", "cpu", 1, dict(chunks=1, chunk_s=0.5, sample=[[10, 0.5]]), 1.0)
assert model.estimate("m", "cpu", 20, 1).seconds > 0
cache = results.ResultCache(max_bytes=1 << 20)
cache.put("a", results.Scoreboard(rows=[]))
assert cache.get("a") is not None
pool = modelpool.ModelPool(lambda name, device: torch.nn.Linear(2, 2), 1 << 20)
assert isinstance(pool.get("x", "cpu"), torch.nn.Linear)
visitor = Visitor.anonymous()
request = admission.Request(page="test", model="m", device="cpu", method="gradient", key="r",
                            payload=None, run_batch=lambda payloads: [42], passes=1)
assert admission.submit(visitor, request) == 42
assert compute.result_cache() is compute.result_cache()
assert "streamlit" not in sys.modules, "streamlit imported while running"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=180, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
