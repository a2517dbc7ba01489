"""The served configuration: every key is one Streamlit knows (a typo is silently ignored
otherwise), and the security and upload settings are the documented ones."""

from __future__ import annotations

import tomllib

from support.browser import REPO_ROOT

CONFIG = REPO_ROOT / ".streamlit" / "config.toml"


def settings() -> dict[str, object]:
    flat = {}
    for section, values in tomllib.loads(CONFIG.read_text()).items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def test_every_key_is_a_streamlit_option():
    from streamlit import config

    known = set(config._config_options_template)
    unknown = sorted(set(settings()) - known)
    assert not unknown, f"Streamlit ignores unknown options: {unknown}"


def test_server_is_headless_with_xsrf_and_cors_protection():
    s = settings()
    assert s["server.headless"] is True
    assert s["server.enableXsrfProtection"] is True
    # XSRF without CORS would still accept cross-origin WebSockets (Streamlit warns about it).
    assert s["server.enableCORS"] is True


def test_upload_cap_suits_weights_and_usage_stats_are_off():
    s = settings()
    # The weights' limit (pages/models.py); images keep 25 MB (workbench/hosting/uploads.py).
    assert s["server.maxUploadSize"] == 400
    assert s["browser.gatherUsageStats"] is False


def test_theme_is_light_and_toolbar_minimal():
    s = settings()
    assert s["theme.base"] == "light"
    assert s["client.toolbarMode"] == "minimal"
