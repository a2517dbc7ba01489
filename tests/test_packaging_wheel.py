"""The wheel people install: built offline from this checkout, installed into a fresh
virtualenv, and used from another directory (no PYTHONPATH, no checkout on sys.path).

The fresh venv has no pip of its own and sees the shared venv's site-packages through a .pth
file, so torch is reused instead of downloaded; the wheel goes in with --no-deps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.browser import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                    str(REPO_ROOT)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("saliency_workbench-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its bin/ folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "shared_venv.pth").write_text("\n".join(sorted(shared)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                    "--no-deps", "--no-index", "--quiet", str(wheel)], check=True, timeout=300)
    return venv / "bin"


def outside_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SALIENCY_CACHE"}}
    return {**env, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_wheel_holds_the_bundled_models_py_typed_and_the_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in ("shapes-cnn", "shapes-cnn-watermark", "shapes-cnn-random-labels", "minilm-sentiment"):
        assert f"saliency_core/weights/{model}.safetensors" in names
        assert f"saliency_core/weights/{model}.json" in names
    assert "saliency_core/py.typed" in names
    assert "saliency_core/methods/guided/csrc/graph_rule.cpp" in names  # the native guided rule, built on use
    assert not [n for n in names if n.startswith(("tests/", "pages/", "workbench/", "app.py"))]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "saliency = saliency_core.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_library_and_console_script_work_from_another_directory(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    photos = elsewhere / "photos"
    photos.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    env = outside_env(tmp_path)
    check = ("import json, saliency_core as sc; from saliency_core.models.cache import cache_root; "
             "m = sc.load_model('shapes-cnn', device='cpu'); "
             "print(json.dumps({'file': sc.__file__, 'labels': m.labels, 'cache': str(cache_root())}))")
    # Both start at once: each spends most of its time importing torch.
    library = subprocess.Popen([str(installed / "python"), "-c", check], cwd=elsewhere, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    script = subprocess.Popen([str(installed / "saliency"), "explain", "photos", "--model", "shapes-cnn",
                               "--method", "gradient,gradcam", "--out", "results", "--device", "cpu"],
                              cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    out, err = library.communicate(timeout=300)
    assert library.returncode == 0, err
    found = json.loads(out)
    assert Path(found["file"]).is_relative_to(installed.parent), found["file"]
    assert len(found["labels"]) == 6
    assert Path(found["cache"]) == tmp_path / "xdg" / "saliency-workbench"

    out, err = script.communicate(timeout=300)
    assert script.returncode == 0, err
    report = (elsewhere / "results" / "report.html").read_text()
    assert report.count("<section") == 2 and "gradcam" in report
    assert sorted(p.name for p in (elsewhere / "results").glob("*.json")) == ["p0.json", "p1.json"]
