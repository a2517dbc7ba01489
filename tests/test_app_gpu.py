"""On a server with a GPU the pages offer it and compute there (skipped without CUDA)."""

from __future__ import annotations

import json

import pytest
import torch
from streamlit.testing.v1 import AppTest
from support.apptest import run_app_page
from support.browser import REPO_ROOT

from workbench.jobs import compute

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.usefixtures("native_guided_rule"),  # runs guided methods (tests/conftest.py)
]


def run_page(page: str, query: dict) -> AppTest:
    at = run_app_page(str(REPO_ROOT / "pages" / page), query, 300)
    assert not at.error, [e.value for e in at.error]
    return at


@pytest.mark.parametrize("method", ["integrated_gradients", "gradcam", "guided_backprop",
                                    "smoothgrad"])
def test_image_page_runs_on_the_gpu_by_default(method):
    compute.result_cache.clear()
    at = run_page("image.py", {"method": method})
    device = at.selectbox(key="image.device")
    assert "cuda" in device.options and device.value == "cuda"
    details = at.json[0].value
    details = json.loads(details) if isinstance(details, str) else details
    assert details["device"].startswith("cuda")
    assert len(at.get("plotly_chart")) == 1


def test_same_view_on_cpu_and_gpu_agrees():
    compute.result_cache.clear()
    gpu = run_page("image.py", {"method": "gradient", "device": "cuda"})
    cpu = run_page("image.py", {"method": "gradient", "device": "cpu"})
    assert gpu.metric[0].value == cpu.metric[0].value  # same explained class
    assert list(gpu.dataframe[0].value["class"]) == list(cpu.dataframe[0].value["class"])


def test_compare_page_on_the_gpu():
    compute.result_cache.clear()
    at = run_page("compare.py", {"methods": "gradient,integrated_gradients,gradcam",
                                 "integrated_gradients.steps": "16"})
    assert at.selectbox(key="compare.device").value == "cuda"
    assert len(at.get("image")) == 3 and at.dataframe
