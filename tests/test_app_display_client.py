"""Display changes in the browser: the Image page's heatmap figure carries a colormap menu, an
opacity slider and a clipping slider that Plotly applies on its own, and every choice paints the
colours the server-side PNGs (render.colorize / normalize) paint for the same setting; in
chromium a menu choice redraws the figure with no script run."""

from __future__ import annotations

import json

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
                                       ("positive", "viridis")])
def test_every_in_figure_choice_paints_what_the_server_would(sign, cmap):
    attribution, image = a_map()
    options = display.DisplayOptions(cmap, 0.5, 99.0, sign, "max_abs")
    rendered = display.render_map(attribution, image, options)
    fig = json.loads(display.heatmap_figure(rendered, cmap, image=image, sign=sign,
                                            clip=99.0).to_json())
    assert [t["type"] for t in fig["data"]] == ["image", "heatmap"]
    heat = decoded(display.heat_trace(fig))
    lo = -1.0 if sign == "signed" else 0.0
    expected = render.colorize(rendered.scaled, cmap, signed=sign == "signed").reshape(-1, 3)
    got = figure_colours(heat, heat["zmin"], heat["zmax"], heat["colorscale"])
    assert (got == expected).all(axis=1).mean() > 0.99  # pixels on a band's edge may round

    (menu,) = fig["layout"]["updatemenus"]
    assert [b["label"] for b in menu["buttons"]] == list(display.colormaps_for(sign))
    assert menu["buttons"][menu["active"]]["label"] == cmap
    for button in menu["buttons"]:
        other = button["label"]
        assert button["args"][1] == [1]  # the heatmap, not the input under it
        scale = button["args"][0]["colorscale"][0]
        want = render.colorize(rendered.scaled, other, signed=sign == "signed").reshape(-1, 3)
        assert (figure_colours(heat, heat["zmin"], heat["zmax"], scale) == want).all(axis=1).mean() > 0.99

    opacity, clip = fig["layout"]["sliders"]
    assert [s["args"][0]["opacity"][0] for s in opacity["steps"]][-1] == 1.0
    assert opacity["active"] == len(opacity["steps"]) - 1  # the heatmap as it was: opaque
    assert clip["steps"][clip["active"]]["label"] == "99"
    for step in clip["steps"]:
        q = float(step["label"])
        zmin, zmax = step["args"][0]["zmin"][0], step["args"][0]["zmax"][0]
        assert zmin == pytest.approx(lo * zmax)
        served = display.render_map(attribution, image,
                                    display.DisplayOptions(cmap, 0.5, q, sign, "max_abs"))
        want = render.colorize(served.scaled, cmap, signed=sign == "signed").reshape(-1, 3)
        got = figure_colours(heat, zmin, zmax, heat["colorscale"])
        assert (got == want).all(axis=1).mean() > 0.99, q


def test_clip_values_agree_with_clip_value():
    attribution, _image = a_map(3)
    flat = attribution.sum(0)
    for sign in render.SIGN_MODES:
        many = render.clip_values(flat, sign, (50.0, 99.0, 100.0))
        assert many.tolist() == [render.clip_value(flat, sign, q) for q in (50.0, 99.0, 100.0)]
    assert render.clip_values(np.zeros((4, 4)), "absolute", (99.0,)).tolist() == [0.0]


def test_the_image_page_sends_the_controls(monkeypatch, tmp_path):
    monkeypatch.setenv("SALIENCY_SHARE_DIR", str(tmp_path / "share"))
    compute.result_cache.clear()
    at = run_app_page(PAGE, {"model": "shapes-cnn", "method": "gradient"}, 180)
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    assert [t["type"] for t in spec["data"]] == ["image", "heatmap"]
    assert spec["data"][0]["source"].startswith("data:image/png;base64,")
    assert len(spec["layout"]["sliders"]) == 2 and spec["layout"]["updatemenus"]
    compute.result_cache.clear()


@pytest.mark.browser
def test_a_menu_choice_redraws_in_the_browser_without_a_script_run(app_server, page):
    from playwright.sync_api import expect

    open_app(page, app_server, "image?model=shapes-cnn&method=gradient")
    figure = page.locator('[data-testid="stMain"] .js-plotly-plot')
    expect(figure).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    wait_for_app(page)
    overlay = page.locator('[data-testid="stMain"] [data-testid="stImage"] img').nth(1)
    overlay_before = overlay.get_attribute("src")
    # Every message from the server after this point would be a rerun.
    page.evaluate("""() => { window.__scriptRuns = 0;
        new MutationObserver(() => {
          const app = document.querySelector('[data-testid="stApp"]');
          if (app && app.getAttribute('data-test-script-state') === 'running') window.__scriptRuns++;
        }).observe(document.querySelector('[data-testid="stApp"]'), {attributes: true});
    }""")
    figure.locator(".updatemenu-header-group").click()
    figure.locator(".updatemenu-item-text", has_text="viridis").click()
    page.wait_for_function("""() => {
        const gd = document.querySelector('[data-testid="stMain"] .js-plotly-plot');
        const scale = gd.data[1].colorscale;
        return scale[0][1] === 'rgb(68,1,84)';   // viridis' first colour
    }""", timeout=10_000)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__scriptRuns") == 0
    assert overlay.get_attribute("src") == overlay_before
    assert_no_exception(page)
