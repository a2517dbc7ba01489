"""The budget's question in the browser (issues 25 and 26): an over-budget Integrated Gradients
run shows its coarse map with the question (how long the rest takes, what would fit), with no
Stop beside it (nothing runs), and once "Run anyway" starts the run, the question is gone from
beside the progress bar. An expensive text link (``long``, in ``make test-costs``) runs with
its bar and Stop, and Stop keeps the best level reached.

The server's budget is a thousandth of a second: IG's first level (128 of 1024 steps on
shapes-cnn) runs all the same (a coarse map is never held back for the question), the rest
asks.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from support.browser import (
    APP_RUN_TIMEOUT_MS,
    REPO_ROOT,
    assert_no_exception,
    open_app,
    screenshot,
    serve_streamlit,
    wait_for_app,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAIN = '[data-testid="stMain"]'
QUERY = "image?model=shapes-cnn&input=shapes:3&method=integrated_gradients&p.steps=1024&p.quadrature=riemann_right"



@pytest.fixture(scope="module")
def budget_server(native_guided_rule, tmp_path_factory):
    from conftest import app_env

    env = {**app_env(), "SALIENCY_REQUEST_BUDGET_S": "0.001",
           "SALIENCY_REQUEST_LIMIT_S": "600"}
    log = tmp_path_factory.mktemp("budget") / "server.log"
    with serve_streamlit("app.py", cwd=REPO_ROOT, log_path=log, env=env) as base_url:
        yield base_url


def test_over_budget_ig_asks_with_its_coarse_map_and_the_question_goes_when_it_runs(
        budget_server, page):
    from playwright.sync_api import expect

    open_app(page, budget_server, QUERY)
    assert_no_exception(page)
    question = page.locator(f'{MAIN} [data-testid="stAlertContentWarning"]',
                            has_text="The map shown is a coarse one")
    expect(question).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    text = question.inner_text()
    assert "more than the" in text and "Run anyway" in text
    # The coarse map is on screen while the question waits.
    expect(page.locator(f'{MAIN} [data-testid="stPlotlyChart"]')).to_have_count(1)
    expect(page.get_by_text("Coarse result: 128 of 1024 steps")).to_have_count(1)
    # Nothing runs while the question waits: no Stop button beside it.
    expect(page.locator(MAIN).get_by_role("button", name="Stop", exact=True)).to_have_count(0)
    screenshot(page, "costs-question-with-coarse-map.png", full_page=True)

    run_anyway = page.get_by_role("button", name="Run anyway")
    run_anyway.click()
    # While the run goes on, its bar and Stop stand alone: the question and its button never
    # show beside it (sampled until the run is over).
    bar = page.locator(f'{MAIN} [data-testid="stProgress"]')
    saw_bar = False
    deadline = time.monotonic() + APP_RUN_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if bar.count():
            if not saw_bar:
                screenshot(page, "costs-running-after-run-anyway.png", full_page=True)
            saw_bar = True
            assert question.count() == 0, "the question stayed beside the running bar"
            assert run_anyway.count() == 0, "'Run anyway' stayed beside the running bar"
        elif saw_bar or page.get_by_text("model passes (+").count():
            break
        page.wait_for_timeout(50)
    wait_for_app(page)
    assert_no_exception(page)
    expect(question).to_have_count(0)
    expect(run_anyway).to_have_count(0)  # gone once the run is over
    expect(page.get_by_text("Coarse result")).to_have_count(0)
    expect(page.locator(f'{MAIN} [data-testid="stPlotlyChart"]')).to_have_count(1)
    screenshot(page, "costs-after-the-full-run.png", full_page=True)


# The hostile suite's expensive text link (issue 25): a long review explained with many IG
# steps, opened from a shared link. Its estimate once refused it outright; it must run, with
# its bar and Stop, and Stop must end it and keep the best level reached.
LONG_REVIEW = ("The film opens slowly, but the second act is wonderful: the actors are great, "
               "the music is better still, and the ending made the whole cinema cheer. " * 40
               )[:5_000]
TEXT_QUERY = ("text?model=minilm-sentiment&method=integrated_gradients&p.steps=512"
              "&text=" + quote(LONG_REVIEW))


@pytest.mark.long
def test_an_expensive_text_link_shows_progress_and_stop_and_stop_ends_it(budget_server, page):
    from playwright.sync_api import expect

    open_app(page, budget_server, TEXT_QUERY)
    assert_no_exception(page)
    refused = page.get_by_text("Refused:")
    run_anyway = page.get_by_role("button", name="Run anyway")
    expect(run_anyway.or_(refused)).to_have_count(1, timeout=APP_RUN_TIMEOUT_MS)
    assert refused.count() == 0, "the server refused a run it would finish within its limit"
    # The question is asked with the coarse highlighted text already on screen.
    expect(page.get_by_text("Coarse result: 64 of 512 steps")).to_have_count(1)
    expect(page.get_by_text("The token scores shown are coarse ones")).to_have_count(1)
    expect(page.locator(MAIN).get_by_role("button", name="Stop", exact=True)).to_have_count(0)
    screenshot(page, "costs-text-link-question.png", full_page=True)
    run_anyway.click()
    stop = page.locator(MAIN).get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible(timeout=APP_RUN_TIMEOUT_MS)
    expect(page.locator(f'{MAIN} [data-testid="stProgress"]')).to_be_visible()
    screenshot(page, "costs-text-link-running.png", full_page=True)
    stop.click()
    expect(page.get_by_text("Stopped before it finished")).to_be_visible(
        timeout=APP_RUN_TIMEOUT_MS)
    wait_for_app(page)
    assert_no_exception(page)
    # The best level reached before Stop stays on screen, with the note that says so.
    expect(page.get_by_text("Best result before Stop")).to_have_count(1)
    expect(page.locator(f'{MAIN} [data-testid="stProgress"]')).to_have_count(0)
    screenshot(page, "costs-text-link-stopped.png", full_page=True)
