"""No Docker engine here, so the Dockerfile is checked by reading it: everything it copies
exists, and it serves the hosted configuration of `make serve` (workbench.serve hosted) with the
same app, port and health check as `make run`."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess

import pytest
from support.browser import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    joined, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    result = []
    for line in joined:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def words(args: str) -> list[str]:
    """Exec-form (JSON array) or shell-form arguments as a list of words."""
    if args.startswith("["):
        return json.loads(args)
    return shlex.split(args)


def of(keyword: str) -> list[str]:
    return [args for key, args in instructions() if key == keyword]


def streamlit_invocation(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """From a command line, the words from `streamlit` to the script and its options, with the
    hosted mode of workbench.serve expanded to the `run` arguments it starts."""
    from workbench.serve import hosted_argv

    # workbench.serve is `streamlit` with a warm start, taking the same arguments.
    start = next(i for i, word in enumerate(argv)
                 if word.endswith("streamlit") or word == "workbench.serve")
    words = argv[start + 1 :]
    if words[:1] == ["hosted"]:
        words = hosted_argv(words[1:])
    run = words[:2]
    options = {}
    rest = words[2:]
    for i, word in enumerate(rest):
        if word.startswith("--") and "=" in word:
            key, value = word[2:].split("=", 1)
            options[key] = value
        elif word.startswith("--") and i + 1 < len(rest):
            options[word[2:]] = rest[i + 1]
    return run, options


def test_base_image_is_python_311_slim():
    assert of("FROM")[0].split()[0] == "python:3.11-slim"


def test_every_copied_path_exists():
    missing = []
    for args in of("COPY") + of("ADD"):
        parts = [w for w in words(args) if not w.startswith("--")]
        if any(w.startswith("--from") for w in words(args)):
            continue  # copies from another build stage, not from the repository
        for source in parts[:-1]:
            if not (REPO_ROOT / source).exists():
                missing.append(source)
    assert not missing, f"Dockerfile copies paths the repository lacks: {missing}"


def test_image_contains_every_top_level_part_of_the_app():
    copied = {w.rstrip("/") for args in of("COPY") for w in words(args)[:-1]}
    needed = {"app.py", "pages", "saliency_core", ".streamlit"}  # weights: saliency_core/weights
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"


def test_runs_as_a_non_root_user():
    users = of("USER")
    assert users, "no USER instruction: the app would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_exposes_the_port_and_checks_health():
    assert "8501" in " ".join(of("EXPOSE")).split()
    (healthcheck,) = of("HEALTHCHECK")
    assert "localhost:8501/_stcore/health" in healthcheck
    assert "curl" not in healthcheck, "python:3.11-slim has no curl"


def test_prefetch_build_argument_drives_the_fetch_command():
    assert any(arg.split("=")[0] == "PREFETCH_MODELS" for arg in of("ARG"))
    assert any("saliency_core fetch $PREFETCH_MODELS" in run for run in of("RUN"))


def make_command(target: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n prints the recipe without running it; the line starting the app is the one we want.
    output = subprocess.run(
        ["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = [line for line in output.splitlines()
             if re.search(r"(streamlit|workbench\.serve) (run|hosted)", line)]
    assert len(lines) == 1, output
    return shlex.split(lines[0])


def make_run_command() -> list[str]:
    return make_command("run")


def test_cmd_starts_the_hosted_configuration_of_make_serve():
    (cmd,) = of("CMD")
    docker_run, docker_options = streamlit_invocation(words(cmd))
    serve_run, serve_options = streamlit_invocation(make_command("serve"))
    make_run, make_options = streamlit_invocation(make_run_command())

    assert docker_run == serve_run == make_run == ["run", "app.py"]
    assert docker_options == serve_options
    assert docker_options["server.port"] == make_options["server.port"] == "8501"
    # In a container the app must listen beyond the container's own loopback, and never show
    # a traceback to a user.
    assert docker_options["server.address"] == "0.0.0.0"
    assert docker_options["client.showErrorDetails"] == "none"


def test_hosted_mode_sets_metrics_and_hosted_defaults_and_lets_options_override():
    from workbench.serve import HOSTED_ENV, hosted_argv

    assert HOSTED_ENV["SALIENCY_METRICS_PORT"] == "9464" and HOSTED_ENV["SALIENCY_HOSTED"] == "1"
    argv = hosted_argv(["app.py", "--server.address", "127.0.0.1", "--server.port=9000"])
    assert argv[:2] == ["run", "app.py"]
    assert argv.count("--server.address") == 1 and "0.0.0.0" not in argv
    assert "--client.showErrorDetails" in argv and "--server.port=9000" in argv
    metrics_port = " ".join(of("ENV")).split("SALIENCY_METRICS_PORT=")[1].split()[0]
    assert metrics_port == HOSTED_ENV["SALIENCY_METRICS_PORT"]
    assert metrics_port in " ".join(of("EXPOSE")).split()
    with pytest.raises(SystemExit):
        hosted_argv(["--server.port", "1"])


def test_image_is_offline_at_run_time_like_make_run():
    env = " ".join(of("ENV"))
    assert "HF_HUB_OFFLINE=1" in env
    assert "HF_HUB_OFFLINE=1" in " ".join(make_run_command())


def test_dockerignore_keeps_local_state_out_but_bundled_weights_in():
    rules = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".venv", "models_cache", "tests/output"} <= set(rules)
    assert not any(rule.startswith("saliency_core") for rule in rules)  # the bundled weights
