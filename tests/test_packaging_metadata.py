"""pyproject.toml describes the library people install: ranges that the exact pins of
requirements.txt satisfy, Streamlit only in the [app] extra, a `saliency` console script."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from support.browser import REPO_ROOT
from test_foundation_requirements import canonical, pins

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
CORE = [Requirement(line) for line in PROJECT["dependencies"]]
EXTRAS = {
    extra: [Requirement(line) for line in lines]
    for extra, lines in PROJECT["optional-dependencies"].items()
}
EVERY = [*CORE, *(r for reqs in EXTRAS.values() for r in reqs)]
PINNED = {**pins("requirements.txt"), **pins("requirements-dev.txt")}


def test_distribution_and_import_names():
    assert PROJECT["name"] == "saliency-workbench"
    assert PROJECT["scripts"] == {"saliency": "saliency_core.cli:main"}
    build = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["build-system"]
    assert build["build-backend"] == "hatchling.build"


@pytest.mark.parametrize("requirement", EVERY, ids=str)
def test_every_range_holds_the_tested_pin(requirement):
    name = canonical(requirement.name)
    assert name in PINNED, f"{name} is a dependency but requirements*.txt does not pin it"
    assert not requirement.specifier.contains("0.0.1"), f"{requirement}: no lower bound"
    assert requirement.specifier.contains(PINNED[name]), (
        f"{requirement} excludes the tested pin {name}=={PINNED[name]}")


def test_every_runtime_pin_is_a_dependency_or_in_an_extra():
    declared = {canonical(r.name) for r in EVERY}
    missing = set(pins("requirements.txt")) - declared
    assert not missing, f"pinned for the app but not declared in pyproject.toml: {sorted(missing)}"


def test_streamlit_and_services_stay_out_of_the_library():
    core = {canonical(r.name) for r in CORE}
    assert not core & {"streamlit", "plotly", "ray", "s3fs", "authlib"}
    assert "streamlit" in {canonical(r.name) for r in EXTRAS["app"]}


def test_version_is_the_package_version():
    import saliency_core

    assert re.fullmatch(r"\d+\.\d+\.\d+", saliency_core.__version__)
