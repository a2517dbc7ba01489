"""The issue's proof, as a new user would do it: a plain virtualenv (its own pip, no system or
shared site-packages) installs the wheel and the checkout with their dependencies from the
registry pip is configured for, then `saliency explain` turns a folder of images into an
HTML report that opens offline.

Installing PyTorch into a fresh venv (and even resolving its dependencies there) takes minutes,
so those tests carry the ``install`` marker and run in `make install-check`. `make test` runs the part
that is quick: the sdist and the wheel built from it as `python -m build` does;
tests/test_packaging_wheel.py installs and runs that wheel against the shared venv.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.browser import REPO_ROOT

pytestmark = pytest.mark.slow

def run(cmd: list[str], timeout: int, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, **kw)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def fresh_env(tmp: Path) -> dict[str, str]:
    """The environment of someone outside this checkout: no PYTHONPATH, no venv, an empty
    user cache, offline model hubs (the bundled models need none)."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "SALIENCY_CACHE", "VIRTUAL_ENV", "PYTHONHOME"}}
    return {**env, "XDG_CACHE_HOME": str(tmp / "xdg"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory, request) -> Path:
    """The sdist and the wheel, built as `python -m build` builds them (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    # Isolated (the build backend from the registry) only in a run that installs anyway.
    installs = any(item.get_closest_marker("install") for item in request.session.items)
    isolation = [] if installs else ["--no-isolation"]
    run([sys.executable, "-m", "build", *isolation, "--outdir", str(out), str(REPO_ROOT)], timeout=600)
    return out


def plain_venv(where: Path) -> Path:
    run([sys.executable, "-m", "venv", str(where)], timeout=300)
    cfg = (where / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    return where / "bin"


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("saliency_workbench-*.whl")
    return wheel


def test_the_sdist_and_the_wheel_are_built(dist):
    (sdist,) = dist.glob("saliency_workbench-*.tar.gz")
    names = zipfile.ZipFile(wheel_of(dist)).namelist()
    assert "saliency_core/weights/shapes-cnn.safetensors" in names and "saliency_core/py.typed" in names
    assert sdist.stat().st_size > 0


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


# A fresh venv resolving or installing PyTorch (minutes): left out unless selected (make install-check).
INSTALLS = pytest.mark.install


@INSTALLS
def test_a_fresh_venv_resolves_the_wheels_dependencies_to_the_pinned_versions(dist, tmp_path):
    bin_dir = plain_venv(tmp_path / "venv")
    report = tmp_path / "report.json"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
         str(wheel_of(dist))], timeout=900, env=fresh_env(tmp_path))
    resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    assert "saliency-workbench" in resolved and "torch" in resolved
    pins = _pins()
    # The ranges start at the tested pins, so a fresh install is never older than what CI tests.
    from packaging.version import Version

    for name in ("torch", "torchvision", "numpy", "pillow", "safetensors", "transformers", "matplotlib"):
        assert Version(resolved[name]) >= Version(pins[name]), (name, resolved[name], pins[name])


def _photos(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(folder / f"photo{i}.png")


def _explain_a_folder(bin_dir: Path, tmp_path: Path, tag: str) -> str:
    elsewhere = tmp_path / f"elsewhere-{tag}"
    _photos(elsewhere / "photos")
    run([str(bin_dir / "saliency"), "explain", "photos", "--model", "shapes-cnn", "--method",
         "gradient,gradcam", "--out", "results", "--device", "cpu", "--no-progress"],
        timeout=600, cwd=elsewhere, env=fresh_env(tmp_path))
    results = elsewhere / "results"
    assert sorted(p.name for p in results.glob("*.json")) == ["photo0.json", "photo1.json"]
    page = (results / "report.html").read_text()
    assert page.count("<section") == 2 and page.count('src="data:image/png;base64,') == 6
    assert not re.findall(r'(?:src|href)="https?://', page)  # opens offline
    return page


@INSTALLS
def test_a_fresh_venv_installs_the_wheel_then_the_checkout_and_explains_a_folder(dist, tmp_path):
    bin_dir = plain_venv(tmp_path / "venv")
    env = fresh_env(tmp_path)
    run([str(bin_dir / "python"), "-m", "pip", "install", str(wheel_of(dist))], timeout=1800, env=env)
    where = run([str(bin_dir / "python"), "-c", "import saliency_core, sys; print(saliency_core.__file__)"],
                timeout=300, cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    assert "gradcam" in _explain_a_folder(bin_dir, tmp_path, "wheel")
    # The checkout itself (pip builds it), then as an editable install, in the same venv.
    run([str(bin_dir / "python"), "-m", "pip", "install", "--force-reinstall", "--no-deps", str(REPO_ROOT)],
        timeout=900, env=env)
    assert "gradcam" in _explain_a_folder(bin_dir, tmp_path, "checkout")
    run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "-e", str(REPO_ROOT)], timeout=900, env=env)
    where = run([str(bin_dir / "python"), "-c", "import saliency_core; print(saliency_core.__file__)"],
                timeout=300, cwd=tmp_path, env=env).stdout.strip()
    assert Path(where).is_relative_to(REPO_ROOT), where
    assert "gradcam" in _explain_a_folder(bin_dir, tmp_path, "editable")
