"""Display options on the Image page: one set of controls (the row above the pictures), named
for people, and an interactive heatmap that paints the colours the server-side PNGs
(render.colorize / normalize) paint for the same setting and carries no controls of its own."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from support.apptest import run_app_page
from support.browser import (
    APP_RUN_TIMEOUT_MS,
    REPO_ROOT,
    assert_no_exception,
    open_app,
    wait_for_app,
)

from saliency_core import render
from workbench.jobs import compute
from workbench.ui import display

PAGE = str(REPO_ROOT / "pages" / "image.py")


def plotly_colour(scale: list, t: np.ndarray) -> np.ndarray:
    """What Plotly paints at normalised values t: linear between the stops around t."""
    stops = np.array([s for s, _ in scale])
    colours = np.array([[int(v) for v in c[4:-1].split(",")] for _, c in scale], dtype=float)
    t = np.clip(t, 0.0, 1.0)
    # The stop pair whose interval holds t (a band's two stops share one colour).
    hi = np.clip(np.searchsorted(stops, t, side="right"), 1, len(stops) - 1)
    lo = hi - 1
    span = np.where(stops[hi] > stops[lo], stops[hi] - stops[lo], 1.0)
    w = ((t - stops[lo]) / span)[:, None]
    return np.rint(colours[lo] * (1 - w) + colours[hi] * w)


def figure_colours(trace: dict, zmin: float, zmax: float, scale: list) -> np.ndarray:
    z = np.asarray(trace["z"], dtype=np.float64).ravel()
    return plotly_colour(scale, (z - zmin) / (zmax - zmin))


def decoded(trace: dict) -> dict:
    """A heatmap trace from a figure's JSON spec, with its typed arrays as numpy arrays."""
    out = dict(trace)
    for name in ("z", "customdata"):
        value = trace[name]
        if isinstance(value, dict) and "bdata" in value:
            import base64

            raw = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            shape = [int(v) for v in str(value.get("shape", raw.size)).split(",")]
            out[name] = raw.reshape(shape)
    return out


def a_map(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    attribution = rng.normal(size=(3, 24, 24)) * np.linspace(0.1, 3.0, 24)[None, None, :]
    image = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    return attribution, image


@pytest.mark.parametrize("sign,cmap", [("absolute", "inferno"), ("signed", "RdBu_r"),
                                       ("positive", "viridis"), ("signed", "PiYG")])
def test_the_heatmap_paints_what_the_server_would(sign, cmap):
    attribution, image = a_map()
    options = display.DisplayOptions(cmap, 0.5, 99.0, sign, "max_abs")
    rendered = display.render_map(attribution, image, options)
    fig = json.loads(display.heatmap_figure(rendered, cmap).to_json())
    assert [t["type"] for t in fig["data"]] == ["heatmap"]
    heat = decoded(display.heat_trace(fig))
    expected = render.colorize(rendered.scaled, cmap, signed=sign == "signed").reshape(-1, 3)
    got = figure_colours(heat, heat["zmin"], heat["zmax"], heat["colorscale"])
    assert (got == expected).all(axis=1).mean() > 0.99  # pixels on a band's edge may round
    # The one set of controls is the row of widgets: none inside the figure.
    assert not fig["layout"].get("updatemenus") and not fig["layout"].get("sliders")


def test_every_colormap_has_a_name_for_people():
    for cmap in (*render.SEQUENTIAL_CMAPS, *render.DIVERGING_CMAPS):
        name = display.cmap_name(cmap)
        assert name != cmap and "_" not in name, cmap


def test_clip_values_agree_with_clip_value():
    attribution, _image = a_map(3)
    flat = attribution.sum(0)
    for sign in render.SIGN_MODES:
        many = render.clip_values(flat, sign, (50.0, 99.0, 100.0))
        assert many.tolist() == [render.clip_value(flat, sign, q) for q in (50.0, 99.0, 100.0)]
    assert render.clip_values(np.zeros((4, 4)), "absolute", (99.0,)).tolist() == [0.0]


def test_the_image_page_sends_a_heatmap_without_controls(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "share"))
    compute.result_cache.clear()
    at = run_app_page(PAGE, {"model": "shapes-cnn", "method": "gradient"}, 180)
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert [t["type"] for t in spec["data"]] == ["heatmap"]
    assert not spec["layout"].get("sliders") and not spec["layout"].get("updatemenus")
    compute.result_cache.clear()


def test_an_old_link_with_a_sequential_map_for_signed_values_still_opens(monkeypatch, tmp_path):
    """Links from before the names changed carry matplotlib's names, as links still do."""
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "share"))
    compute.result_cache.clear()
    at = run_app_page(PAGE, {"model": "shapes-cnn", "method": "gradient", "sign": "signed",
                             "cmap": "coolwarm", "alpha": "0.3", "clip": "97"}, 180)
    assert at.selectbox(key="image.view.cmap").value == "coolwarm"
    assert at.selectbox(key="image.view.cmap").format_func("coolwarm") == \
        display.cmap_name("coolwarm")
    assert at.query_params["cmap"] == "coolwarm" and at.query_params["clip"] == "97"
    compute.result_cache.clear()


@pytest.mark.browser
def test_one_set_of_display_controls_with_readable_colormap_names(app_server, page):
    from playwright.sync_api import expect

    open_app(page, app_server, "image?model=shapes-cnn&method=gradient")
    main = page.locator('[data-testid="stMain"]')
    expect(main.locator(".js-plotly-plot")).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    wait_for_app(page)
    # One colormap choice, one opacity, one clip: none repeated inside the figure.
    assert main.get_by_role("combobox", name=re.compile("colormap", re.IGNORECASE)).count() == 1
    assert main.get_by_role("slider").count() == 2
    assert main.get_by_text(re.compile("opacity", re.IGNORECASE)).count() == 1
    assert main.get_by_text(re.compile("clip at", re.IGNORECASE)).count() == 1
    assert main.locator(".js-plotly-plot .updatemenu-container, .js-plotly-plot .slider-container"
                        ).count() == 0
    colormap = main.get_by_role("combobox", name=re.compile("colormap", re.IGNORECASE))
    expect(colormap).to_have_value("Inferno (black, red, yellow)")

    main.get_by_role("combobox", name="Sign").click()
    page.get_by_role("option", name="Signed (for and against)").click()
    wait_for_app(page)
    expect(colormap).to_have_value("Blue, white, red")
    expect(main.get_by_text("Signed values need a two-sided colormap, so Inferno")).to_be_visible()
    assert "RdBu" not in main.inner_text()
    assert "cmap=RdBu_r" in page.url  # links keep the stable names old links have
    assert_no_exception(page)


def test_a_nearly_uniform_map_is_said_to_be_flat_and_a_peaked_one_is_not():
    """A map whose values barely vary renders as one solid colour once the percentile scaling
    has stretched it; the page says so instead of leaving a block of colour unexplained."""
    options = display.DisplayOptions("inferno", 0.5, 99.0, "absolute", "max_abs")
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    rng = np.random.default_rng(0)
    flat = display.render_map((0.015 + 1e-4 * rng.random((1, 16, 16))), image, options)
    notice = display.flat_notice(flat, options.sign, "attention_rollout")
    assert notice is not None and notice.startswith("This map is nearly uniform")
    assert "Attention rollout" in notice
    assert np.ptp(flat.heat.reshape(-1, 3), axis=0).max() < 40  # it really is one colour
    peaked = np.full((1, 16, 16), 0.015)
    peaked[0, 4:8, 4:8] = 0.03
    assert display.flat_notice(display.render_map(peaked, image, options), "absolute") is None
    zero = display.render_map(np.zeros((1, 16, 16)), image, options)
    assert display.flat_notice(zero, "absolute").startswith("This map is blank")
    sparse = np.zeros((1, 16, 16))
    sparse[0, 3, 3] = 1.0  # under the 99th percentile everywhere but one pixel: not flat
    assert display.flat_notice(display.render_map(sparse, image, options), "absolute") is None
