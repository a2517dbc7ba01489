"""The example of docs/interop.md runs as written: Captum's and pytorch-grad-cam's maps drawn
in one grid and ranked on one scoreboard beside the workbench's."""

from __future__ import annotations

import contextlib
import io
import os
import re

import pytest
from PIL import Image
from support.browser import REPO_ROOT


@pytest.mark.slow
def test_the_interop_example_runs_and_shows_every_map(tmp_path):
    page = (REPO_ROOT / "docs" / "interop.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the example saves compare.png where it runs
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, "docs/interop.md", "exec"), {"__name__": "interop_example"})  # noqa: S102 - our own doc
    finally:
        os.chdir(cwd)
    picture = Image.open(tmp_path / "compare.png")
    assert picture.width > 3 * picture.height  # the input and three maps in a row
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[") and len(lines) == 4
    assert {line.split(" ", 1)[1].rsplit(" ", 4)[0] for line in lines[1:]} == {
        "Captum IG", "pytorch-grad-cam", "workbench Grad-CAM"}
