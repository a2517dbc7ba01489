"""The Makefile and .ci/run behave as the README promises: pip runs only when requirements
change, and a test run that collected nothing is a failure. Checked on a copy of the two files
in a scratch directory whose ".venv/bin/python" is a stand-in that records its arguments."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from support.browser import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

FAKE_PYTHON = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls.log"
if [ "$1 $2" = "-m pytest" ]; then
    printf '%s\\n' "$FAKE_PYTEST_OUTPUT"
    exit "$FAKE_PYTEST_RC"
fi
exit 0
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO_ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "requirements.txt").write_text("numpy==2.4.6\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\npytest==9.2.0\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def make(project: Path, *args: str, rc: int = 0, output: str = "", script=("make",)):
    env = dict(
        os.environ,
        FAKE_PYTEST_RC=str(rc),
        FAKE_PYTEST_OUTPUT=output,
        CHROMIUM="/bin/sh",  # any existing file: keeps browser-deps from calling apt-get
    )
    return subprocess.run(
        [*script, *args, "CHROMIUM=/bin/sh"],
        check=False,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def calls(project: Path) -> list[str]:
    log = project / ".venv" / "bin" / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_pip_runs_once_and_again_only_when_requirements_change(project):
    assert make(project, "test").returncode == 0
    assert calls(project).count("-m pip install -r requirements-dev.txt") == 1

    assert make(project, "test").returncode == 0
    assert calls(project).count("-m pip install -r requirements-dev.txt") == 1, "not idempotent"

    future = time.time() + 5  # newer than the stamp without sleeping
    os.utime(project / "requirements.txt", (future, future))
    assert make(project, "test").returncode == 0
    assert calls(project).count("-m pip install -r requirements-dev.txt") == 2


def test_make_test_passes_pytests_exit_status_through(project):
    assert make(project, "test", rc=0).returncode == 0
    assert make(project, "test", rc=1).returncode != 0
    assert "-m pytest" in calls(project)


def test_make_test_fails_when_pytest_collected_nothing(project):
    result = make(project, "test", rc=5)
    assert result.returncode != 0
    assert "no tests" in result.stdout


def test_ci_run_is_make_test_and_ends_with_pytests_summary(project):
    summary = "============ 3 passed, 1 skipped in 0.42s ============"
    result = make(project, rc=0, output=summary, script=("bash", ".ci/run"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == summary
    assert "-m pytest" in calls(project)


def test_ci_run_fails_when_no_test_ran(project):
    result = make(
        project, rc=5, output="============ no tests ran in 0.01s ============",
        script=("bash", ".ci/run"),
    )  # fmt: skip
    assert result.returncode != 0


def test_ci_run_fails_when_tests_fail(project):
    result = make(
        project, rc=1, output="============ 1 failed, 2 passed in 0.50s ============",
        script=("bash", ".ci/run"),
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stdout.rstrip().endswith("1 failed, 2 passed in 0.50s ============")


def test_ci_run_is_executable_and_runs_the_readme_test_command():
    ci = REPO_ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    assert ci.read_text().startswith("#!/usr/bin/env bash")
    assert "make test" in ci.read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme


def test_make_targets_print_the_expected_commands():
    def dry(*args):
        return subprocess.run(
            ["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout

    assert "-m benchmarks --device cuda --quick" in dry("bench", "DEVICE=cuda", "BENCH_ARGS=--quick")
    assert "-m benchmarks --device cpu" in dry("bench")
    assert "-m saliency_core fetch resnet50 vgg16" in dry("fetch", "MODELS=resnet50 vgg16")
    assert "-m saliency_core train-bundled" in dry("train-bundled")
    assert "-m ruff check" in dry("lint")
    assert "-m mypy" in dry("lint")  # the type check is part of lint, so CI runs it
    assert "-m pytest" in dry("test")
    run = dry("run", "PORT=8600")
    assert "-m workbench.serve run app.py --server.port 8600" in run


def test_readme_leads_with_the_two_commands_and_documents_real_targets():
    readme = (REPO_ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "make run",
        "make test",
    ]
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in set(re.findall(r"\bmake ([a-z][a-z-]+)", readme)):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"README mentions make {target}"
    screenshot = re.search(r"\]\((docs/screenshots/[^)]+\.png)\)", readme)
    assert screenshot and (REPO_ROOT / screenshot[1]).is_file()
