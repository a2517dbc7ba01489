"""Shared fixtures: the workbench served by ``streamlit run app.py`` on a free port, and headless
Debian chromium (through Playwright) to drive it. Helpers for tests are in tests/support/browser.py."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, settings
from support.browser import (
    CHROMIUM,
    OUTPUT_DIR,
    REPO_ROOT,
    SCREENSHOT_DIR,
    serve_streamlit,
)

# Hypothesis's example counts: "quick" by default; `make fuzz` picks "fuzz" with
# --hypothesis-profile, which is read after this file registers them.
settings.register_profile("quick", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("quick")

SERVER_LOG = OUTPUT_DIR / "app_server.log"
TEST_BUDGET_S = "600"
# The same for pages run in this process under AppTest (test_app_budget sets its own).
os.environ.setdefault("SALIENCY_REQUEST_BUDGET_S", TEST_BUDGET_S)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
NO_CHROMIUM_REASON = (
    f"{CHROMIUM} is missing: browser tests need Debian's chromium "
    "(`make test` installs it when run as root; otherwise `sudo apt-get install chromium`)"
)

# Set when a test that used the served app failed: then its server log is worth reading.
_app_test_failed = False


def _playwright_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -r requirements-dev.txt)"
    return None


def pytest_collection_modifyitems(config, items):
    # Skip up front, with the reason in the summary, instead of failing inside a fixture.
    reason = None if CHROMIUM.exists() else NO_CHROMIUM_REASON
    reason = reason or _playwright_missing()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    global _app_test_failed
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    if report.failed and "app_server" in getattr(item, "fixturenames", ()):
        _app_test_failed = True


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # A failing browser test is often explained by the server's traceback, not the page's.
    if not _app_test_failed or not SERVER_LOG.exists():
        return
    lines = SERVER_LOG.read_text(errors="replace").splitlines()[-80:]
    terminalreporter.section(f"streamlit server log (last {len(lines)} lines of {SERVER_LOG})")
    for line in lines:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def app_server(native_guided_rule):
    """Serve app.py offline on a free localhost port; yields the base URL. The native guided
    rule is built first, so the server loads it from the cache instead of building it."""
    with serve_streamlit("app.py", cwd=REPO_ROOT, log_path=SERVER_LOG, env=app_env()) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def make_run_server(native_guided_rule):
    """app.py served as ``make run`` serves it (``python -m workbench.serve run``: warm start,
    the process settings of workbench/serve.py), for tests of the server process itself."""
    log_path = OUTPUT_DIR / "make_run_server.log"
    with serve_streamlit("app.py", cwd=REPO_ROOT, log_path=log_path, env=app_env(),
                         launcher=("-m", "workbench.serve")) as base_url:
        yield base_url


def app_env() -> dict[str, str]:
    """The environment the served app gets in tests."""
    return {
        "SALIENCY_CACHE": str(REPO_ROOT / "models_cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # Uploads made by browser tests stay in the test output, not in the repository.
        "SALIENCY_SHARE_DIR": str(REPO_ROOT / "tests" / "output" / "share_store"),
        # The shared 2-core test machine is slower than any server: the page tests are not
        # about the budget (tests/test_app_budget.py is), so it must not ask them to confirm.
        "SALIENCY_REQUEST_BUDGET_S": TEST_BUDGET_S,
    }


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium; never Playwright's downloaded browsers."""
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM_REASON)
    reason = _playwright_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser, request):
    """A fresh browser context per test, so no cookies or session state leak between tests.
    A failing test leaves a FAILED-<test>.png screenshot behind."""
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(SCREENSHOT_DIR / f"FAILED-{name}.png"), full_page=True)
            except PlaywrightError as exc:  # the page may be what crashed; keep the failure
                print(f"could not save failure screenshot: {exc}")
        context.close()


@pytest.fixture
def temp_cache(tmp_path, monkeypatch):
    """A fresh, empty model cache (and no allow-listed folders) for the test; yields its path.
    Loaded models are forgotten before and after, so none leaks in from the real cache."""
    from saliency_core.models import forget_loaded

    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SALIENCY_HF_ALLOWLIST", raising=False)
    forget_loaded()
    yield tmp_path / "cache"
    forget_loaded()


@pytest.fixture(scope="session")
def native_guided_rule():
    """The native guided rule built (about 10 s once per torch version, then cached) or found
    missing before the test, so which guided path a call takes never depends on when the
    background build happens to finish. Modules that run guided methods request it
    (``pytestmark = pytest.mark.usefixtures("native_guided_rule")``); the rest never wait
    for a compiler."""
    from saliency_core.methods.guided import graph_rule

    graph_rule.prepare(wait=600, settle=True)


@pytest.fixture(params=["quick", pytest.param("full", marks=pytest.mark.full)])
def strength(request) -> str:
    """'quick' (a representative part, in ``make test``) or 'full' (every case: the ``full``
    marker, which ``make hostile`` selects)."""
    return request.param
