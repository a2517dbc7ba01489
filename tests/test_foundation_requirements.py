"""Dependencies are pinned exactly, and the environment the tests run in is the pinned one."""

from __future__ import annotations

import re
from importlib import metadata

import pytest
from support.browser import REPO_ROOT

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]+\])?==(?P<version>[^\s;#]+)$")
RUNTIME = {
    "torch", "torchvision", "streamlit", "transformers", "plotly", "pillow", "safetensors",
    "scikit-image", "numpy", "matplotlib",
}  # fmt: skip
DEV_ONLY = {"pytest", "playwright", "captum", "grad-cam", "ruff"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(filename: str) -> list[str]:
    lines = []
    for raw in (REPO_ROOT / filename).read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def pins(filename: str) -> dict[str, str]:
    found = {}
    for line in requirement_lines(filename):
        match = PIN.match(line)
        if match:
            found[canonical(match["name"])] = match["version"]
    return found


REQUIREMENT_FILES = sorted(p.name for p in REPO_ROOT.glob("requirements*.txt"))


def test_both_requirement_files_exist():
    assert {"requirements.txt", "requirements-dev.txt"} <= set(REQUIREMENT_FILES)


@pytest.mark.parametrize("filename", REQUIREMENT_FILES)
def test_every_line_is_an_exact_pin_or_an_include(filename):
    loose = [
        line
        for line in requirement_lines(filename)
        if not PIN.match(line) and not re.match(r"^-r\s+\S+$", line)
    ]
    assert not loose, f"{filename}: not pinned with ==: {loose}"


def test_torch_and_torchvision_are_the_releases_on_our_machines():
    runtime = pins("requirements.txt")
    assert runtime.get("torch") == "2.14.1"
    assert runtime.get("torchvision") == "0.29.1"


def test_runtime_requirements_cover_the_app():
    missing = RUNTIME - set(pins("requirements.txt"))
    assert not missing, f"requirements.txt lacks {sorted(missing)}"


def test_dev_requirements_extend_runtime_with_test_tools_only():
    assert "-r requirements.txt" in requirement_lines("requirements-dev.txt")
    dev = set(pins("requirements-dev.txt"))
    assert not DEV_ONLY - dev, f"requirements-dev.txt lacks {sorted(DEV_ONLY - dev)}"
    leaked = DEV_ONLY & set(pins("requirements.txt"))
    assert not leaked, f"dev-only tools in requirements.txt: {sorted(leaked)}"


def test_no_package_is_pinned_twice_with_different_versions():
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    clashes = {n: (runtime[n], dev[n]) for n in runtime.keys() & dev.keys() if runtime[n] != dev[n]}
    assert not clashes


def test_installed_versions_match_the_pins():
    # A stale venv would test other code than the one users get.
    wrong = {}
    for filename in REQUIREMENT_FILES:
        for name, version in pins(filename).items():
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                wrong[name] = (version, "not installed")
                continue
            # Local build tags (torch's +cu130) are the same release.
            if installed.split("+", 1)[0] != version.split("+", 1)[0]:
                wrong[name] = (version, installed)
    assert not wrong, f"pinned vs installed: {wrong}"
