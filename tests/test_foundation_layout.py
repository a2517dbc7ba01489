"""The layout rules every module relies on: the library stays free of Streamlit and of the
dev-only reference implementations, and the product's folders exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from browser import REPO_ROOT

LIBRARY = REPO_ROOT / "saliency_core"
APP_SOURCES = [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "pages").rglob("*.py"))]
DEV_ONLY_MODULES = {"captum", "pytorch_grad_cam", "pytest", "playwright"}


def imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    "path",
    ["app.py", "pages", "saliency_core", "tests", "saliency_core/weights/shapes-cnn.safetensors",
     "requirements.txt", "requirements-dev.txt", "pyproject.toml", "Dockerfile", "Makefile",
     ".streamlit/config.toml", ".ci/run", "README.md"],
)  # fmt: skip
def test_product_layout_exists(path):
    assert (REPO_ROOT / path).exists()


def test_library_never_imports_streamlit():
    offenders = [
        str(p.relative_to(REPO_ROOT))
        for p in sorted(LIBRARY.rglob("*.py"))
        if "streamlit" in imported_top_level_modules(p)
    ]
    assert not offenders, f"saliency_core must stay usable without Streamlit: {offenders}"


def test_shipped_code_does_not_import_dev_only_tools():
    offenders = {}
    for path in [*sorted(LIBRARY.rglob("*.py")), *APP_SOURCES]:
        bad = imported_top_level_modules(path) & DEV_ONLY_MODULES
        if bad:
            offenders[str(path.relative_to(REPO_ROOT))] = sorted(bad)
    assert not offenders, f"dev-only packages imported by the app or library: {offenders}"
