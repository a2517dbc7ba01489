"""The layout rules every module relies on: the library stays free of Streamlit and of the
dev-only reference implementations, and the product's folders exist."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.browser import REPO_ROOT

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
     ".streamlit/config.toml", ".ci/run", "README.md", "models_cache/README.md"],
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


def _package_imports(path: Path) -> set[str]:
    """Sibling modules ``path`` imports within its package (``from . import x``, ``from .x``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                names.add(node.module.split(".")[0])
            else:
                names.update(alias.name for alias in node.names)
    return names


def test_model_sources_never_import_the_registry():
    """The registry lists and builds through the sources (bundled, byo, the zoos); only
    registration.py (run-time models), the CLI and the package's __init__ sit above it."""
    above = {"registry.py", "registration.py", "cli.py", "__init__.py"}
    sources = [p for p in sorted((LIBRARY / "models").glob("*.py")) if p.name not in above]
    assert {p.name for p in sources} >= {"bundled.py", "byo.py"}
    offenders = {p.name: sorted(_package_imports(p) & {"registry", "registration"}) for p in sources}
    assert not {k: v for k, v in offenders.items() if v}, offenders
